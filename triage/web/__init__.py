"""triage.web"""
