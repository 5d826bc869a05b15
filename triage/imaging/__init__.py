"""triage.imaging"""
