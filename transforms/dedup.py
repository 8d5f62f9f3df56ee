"""De-duplication of readings by (device, sequence number).

Each device's state is its highest sequence number and a bitmap of which
of the last `WINDOW` sequence numbers were seen: 128 bytes per device
however long it streams. A sequence number older than the bitmap cannot be
checked. Such readings are returned separately, so that the caller
dead-letters them instead of risking a double count.
"""

import dataclasses

import numpy as np

from transforms import readings

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
    if len(sequence) <= readings.SMALL_BLOCK_READINGS:
        return _split_new_small(seen, sequence.tolist())
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


def _split_new_small(seen: DeviceSeen, sequence: list[int]):
    """Apply `split_new` reading by reading, on the packed bitmap itself.

    Bit k of the window is bit 7 - k % 8 of byte k // 8, the big-endian
    order of `np.packbits`.
    """
    old_max = seen.max_sequence
    packed = bytearray(seen.packed_bits)
    new, duplicate, too_old = [], [], []
    in_block = set()
    for number in sequence:
        old = number <= old_max - WINDOW
        repeat = not old and (
            number in in_block
            or (number <= old_max and _bit(packed, number % WINDOW))
        )
        in_block.add(number)
        too_old.append(old)
        duplicate.append(repeat)
        new.append(not old and not repeat)
    new_numbers = [
        number for number, is_new in zip(sequence, new, strict=True) if is_new
    ]
    if new_numbers:
        _record_small(seen, packed, new_numbers, old_max)
    return (
        np.array(new, dtype=bool),
        np.array(duplicate, dtype=bool),
        np.array(too_old, dtype=bool),
    )


def _bit(packed: bytearray, index: int) -> bool:
    return bool(packed[index >> 3] & (0x80 >> (index & 7)))


def _record_small(seen, packed, new_sequence, old_max):
    new_max = max(old_max, max(new_sequence))
    if new_max - old_max >= WINDOW:
        packed[:] = bytes(len(packed))
    else:
        for number in range(old_max + 1, new_max + 1):
            index = number % WINDOW
            packed[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF
    for number in new_sequence:
        if number > new_max - WINDOW:
            index = number % WINDOW
            packed[index >> 3] |= 0x80 >> (index & 7)
    seen.max_sequence = new_max
    seen.packed_bits = bytes(packed)
