"""GPT-2's byte-level alphabet, which Whisper's BPE is written in: each byte maps to one printable character."""

from __future__ import annotations


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: each byte maps to a printable character so merges never meet whitespace.

    Printable Latin-1 bytes map to themselves; the other 68 bytes take the code points from 256 on, in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {byte: chr(byte) for byte in printable}
    shifted = (byte for byte in range(256) if byte not in mapping)
    for offset, byte in enumerate(shifted):
        mapping[byte] = chr(256 + offset)
    return dict(sorted(mapping.items()))


BYTE_ENCODER: dict[int, str] = bytes_to_unicode()
BYTE_DECODER: dict[str, int] = {char: byte for byte, char in BYTE_ENCODER.items()}
