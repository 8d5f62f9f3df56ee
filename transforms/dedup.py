"""De-duplication of readings by (device, sequence number).

Each device's state is its highest sequence number and a bitmap of which
of the last `WINDOW` sequence numbers were seen: 128 bytes per device
however long it streams. A sequence number older than the bitmap cannot be
checked. Such readings are returned separately, so that the caller
dead-letters them instead of risking a double count.
"""

import dataclasses

import numpy as np

# Sequence numbers tracked per device: 1,024 readings, 17 min at 1 Hz,
# longer than any redelivery seen from Kafka or the gateways.
WINDOW = 1024


@dataclasses.dataclass
class DeviceSeen:
    """Sequence numbers seen from one device."""

    max_sequence: int = -1
    packed_bits: bytes = bytes(WINDOW // 8)


def split_new(seen: DeviceSeen, sequence: np.ndarray):
    """Classify readings as new, duplicate or too old, and record the new.

    Args:
        seen: The device's state; updated in place.
        sequence: Sequence numbers of a block.

    Returns:
        Boolean masks (new, duplicate, too_old) over `sequence`. A number
        repeated inside the block counts as new once.
    """
    bits = np.unpackbits(np.frombuffer(seen.packed_bits, dtype=np.uint8))
    bits = bits.astype(bool)
    old_max = seen.max_sequence
    if len(sequence) and _all_newer(sequence, old_max):
        # The usual case: every reading follows the device's latest.
        new = np.ones(len(sequence), dtype=bool)
        _record(seen, bits, sequence, old_max)
        return new, ~new, ~new
    too_old = sequence <= old_max - WINDOW
    in_window = ~too_old & (sequence <= old_max)
    duplicate = np.zeros(len(sequence), dtype=bool)
    duplicate[in_window] = bits[sequence[in_window] % WINDOW]
    _, first_index = np.unique(sequence, return_index=True)
    first = np.zeros(len(sequence), dtype=bool)
    first[first_index] = True
    duplicate |= ~first & ~too_old
    new = ~duplicate & ~too_old
    _record(seen, bits, sequence[new], old_max)
    return new, duplicate, too_old


def _all_newer(sequence: np.ndarray, old_max: int) -> bool:
    """Check that the numbers rise strictly and all exceed `old_max`."""
    return bool(sequence[0] > old_max) and bool(
        np.all(sequence[1:] > sequence[:-1])
    )


def _record(seen, bits, new_sequence, old_max):
    if len(new_sequence) == 0:
        return
    new_max = max(old_max, int(new_sequence.max()))
    if new_max - old_max >= WINDOW:
        bits[:] = False
    elif new_max > old_max:
        bits[np.arange(old_max + 1, new_max + 1) % WINDOW] = False
    recent = new_sequence[new_sequence > new_max - WINDOW]
    bits[recent % WINDOW] = True
    seen.max_sequence = new_max
    seen.packed_bits = np.packbits(bits).tobytes()
