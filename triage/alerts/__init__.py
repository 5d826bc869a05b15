"""triage.alerts"""
