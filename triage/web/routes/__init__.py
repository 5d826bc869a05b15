"""Routes of the web app: JSON API, browser pages, admin."""
