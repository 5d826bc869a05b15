"""triage.training"""
