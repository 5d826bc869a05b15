"""What the receiver negotiates: SOP classes, roles and transfer syntaxes (the conformance statement's tables).

Every storage SOP class is accepted at association time so that a sender gets a clear per-instance
status (0x0122 for anything but CT) instead of a refused presentation context; only the SOP classes
in :data:`ANALYSED_SOP_CLASSES` are stored.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydicom import uid
from pynetdicom import StoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext

#: SOP classes whose instances are stored and analysed, with their names.
ANALYSED_SOP_CLASSES: Mapping[str, str] = {
    str(uid.CTImageStorage): "CT Image Storage",
    str(uid.EnhancedCTImageStorage): "Enhanced CT Image Storage",
}

#: Transfer syntaxes accepted as offered (stored without transcoding), in our order of preference.
TRANSFER_SYNTAXES: Mapping[str, str] = {
    str(uid.ExplicitVRLittleEndian): "Explicit VR Little Endian",
    str(uid.ImplicitVRLittleEndian): "Implicit VR Little Endian",
    str(uid.DeflatedExplicitVRLittleEndian): "Deflated Explicit VR Little Endian",
    str(uid.ExplicitVRBigEndian): "Explicit VR Big Endian (retired)",
    str(uid.JPEGBaseline8Bit): "JPEG Baseline (Process 1)",
    str(uid.JPEGExtended12Bit): "JPEG Extended (Process 2 & 4)",
    str(uid.JPEGLossless): "JPEG Lossless, Non-Hierarchical (Process 14)",
    str(uid.JPEGLosslessSV1): "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [SV1])",
    str(uid.JPEGLSLossless): "JPEG-LS Lossless",
    str(uid.JPEG2000Lossless): "JPEG 2000 Image Compression (Lossless Only)",
    str(uid.JPEG2000): "JPEG 2000 Image Compression",
    str(uid.RLELossless): "RLE Lossless",
}

VERIFICATION = "1.2.840.10008.1.1"


def supported_contexts() -> list[PresentationContext]:
    """The presentation contexts of the SCP: Verification and every storage SOP class, SCP role.

    Returns
    -------
    list of PresentationContext
        Verification with the two uncompressed little-endian syntaxes, then one context per
        storage SOP class with every syntax of :data:`TRANSFER_SYNTAXES`.
    """
    syntaxes = list(TRANSFER_SYNTAXES)
    contexts = [build_context(VERIFICATION, [str(uid.ExplicitVRLittleEndian), str(uid.ImplicitVRLittleEndian)])]
    contexts += [build_context(str(cx.abstract_syntax), syntaxes) for cx in StoragePresentationContexts]
    return contexts
