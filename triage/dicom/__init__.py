"""triage.dicom"""
