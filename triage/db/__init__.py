"""triage.db"""
