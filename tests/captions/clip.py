"""A speech clip with a known transcript, for the caption recogniser's bench and tests.

Debian's alsa-utils ships eight short recordings of a human voice naming a speaker position
("Front, center", ...) in /usr/share/sounds/alsa. build_clip() lays a fixed sequence of them
(each twice, in a fixed shuffled order) end to end with silence between, as the raw PCM
rostrum feeds a recogniser (16 kHz mono s16le), and returns where each phrase is. ffmpeg does
the resampling; the concatenation is done here so every offset is exact to the sample.

Noise.wav is left out: it is not speech."""
import array
import subprocess
import sys

SOUNDS = "/usr/share/sounds/alsa"
RATE = 16000
# Each of the eight twice, in an order fixed once by hand so no phrase follows itself.
SEQUENCE = [
    "Front_Left", "Rear_Right", "Side_Left", "Front_Center", "Rear_Left", "Side_Right",
    "Front_Right", "Rear_Center", "Side_Left", "Front_Left", "Rear_Center", "Front_Right",
    "Side_Right", "Rear_Left", "Front_Center", "Rear_Right",
]
LEAD_S = 1.0   # silence before the first phrase: the VAD settles on the noise floor
TAIL_S = 2.0   # and after the last, so the recogniser's VAD ends it, not EOF
SPEECH_DBFS = -45.0  # what counts as speech when trimming a file's own quiet ends


def decode(name):
    """One file as 16 kHz mono s16le samples (native-endian array, little-endian hosts)."""
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", f"{SOUNDS}/{name}.wav",
         "-ac", "1", "-ar", str(RATE), "-f", "s16le", "-"],
        check=True, stdout=subprocess.PIPE).stdout
    a = array.array("h")
    a.frombytes(raw[: len(raw) // 2 * 2])
    if sys.byteorder != "little":
        a.byteswap()
    return a


def speech_bounds(a):
    """First and last sample of the 10 ms windows louder than SPEECH_DBFS: the files carry
    ~0.1 s of room tone at their ends, which is not part of the phrase."""
    win = RATE // 100
    limit = (10 ** (SPEECH_DBFS / 20) * 32768) ** 2
    loud = [i for i in range(0, len(a) - win + 1, win)
            if sum(x * x for x in a[i:i + win]) / win > limit]
    if not loud:
        return 0, len(a)
    return loud[0], loud[-1] + win


def build_clip(out_path_raw, gap_s=1.0):
    """Write the clip to out_path_raw; return [(start_s, end_s, words)], one per phrase, in
    order, with the times of its speech in the clip's timeline and words like "front center"."""
    cache = {}
    pcm = array.array("h", bytes(2 * int(LEAD_S * RATE)))
    phrases = []
    gap = array.array("h", bytes(2 * int(gap_s * RATE)))
    for i, name in enumerate(SEQUENCE):
        if name not in cache:
            a = decode(name)
            cache[name] = (a, speech_bounds(a))
        a, (s, e) = cache[name]
        if i:
            pcm.extend(gap)
        at = len(pcm)
        pcm.extend(a)
        phrases.append((round((at + s) / RATE, 3), round((at + e) / RATE, 3),
                        name.replace("_", " ").lower()))
    pcm.extend(array.array("h", bytes(2 * int(TAIL_S * RATE))))
    if sys.byteorder != "little":
        pcm.byteswap()
    with open(out_path_raw, "wb") as f:
        f.write(pcm.tobytes())
    return phrases


if __name__ == "__main__":
    for p in build_clip(sys.argv[1] if len(sys.argv) > 1 else "/tmp/captions-clip.raw"):
        print(*p)
