"""triage.worker"""
