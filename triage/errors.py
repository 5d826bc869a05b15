"""The exceptions of triage. Each message names the value it got and what was expected."""


class TriageError(Exception):
    """Base class of every error raised on purpose by triage."""


class ConfigError(TriageError):
    """A setting has an invalid value (the CLI exits with code 2)."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"invalid setting {key}={value!r}: {reason}")


class UsageError(TriageError):
    """A command was called wrongly (the CLI exits with code 2)."""


class InvalidTransition(TriageError):
    """A series was asked to move between two states that the state machine does not connect."""

    def __init__(self, current: str, new: str) -> None:
        super().__init__(f"series state cannot change from {current!r} to {new!r}")


class DicomInputError(TriageError):
    """A DICOM object cannot be used (bad UID, no pixel data, wrong modality, unreadable)."""


class ImagingError(TriageError):
    """Pixel data cannot be turned into Hounsfield units or model input."""


class ModelError(TriageError):
    """A model directory cannot be loaded or does not match what was expected."""


class StorageError(TriageError):
    """The durable store could not keep an object (disk full, read-only, database down)."""
