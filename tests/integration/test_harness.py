"""The checkers themselves: each kind of broken stream or wrong tone must be caught.

No server here: an Ogg/Opus file from ffmpeg is the good stream, and mutations of it the bad."""

import array
import math

from harness import (TestFailure, check, check_ogg_opus_stream, check_tone, make_opus_file,
                     ogg_crc, parse_ogg, random_bytes, rebuild_page, test)


def problems_after(pages, i, new_bytes=None, drop=False, dup=False):
    raw = [p.raw for p in pages]
    if drop:
        del raw[i]
    elif dup:
        raw.insert(i, raw[i])
    else:
        raw[i] = new_bytes
    return check_ogg_opus_stream(parse_ogg(b"".join(raw))[0], allow_final_eos=True)


def sine_pcm(freq, seconds, amp=4000):
    a = array.array("h", (int(amp * math.sin(2 * math.pi * freq * i / 48000))
                          for i in range(int(48000 * seconds))))
    return a.tobytes()


def fails(fn):
    try:
        fn()
    except TestFailure as e:
        return str(e)
    return None


@test(timeout=30)
def test_ogg_checker_catches_broken_streams(ctx):
    data = (make_opus_file(ctx, 6)).read_bytes()
    pages, rest = parse_ogg(data)
    check(not rest and len(pages) > 8, f"{len(pages)} pages, {len(rest)} bytes left over")
    check(all(p.crc_ok for p in pages), "CRC disagrees with the pages ffmpeg wrote")
    check(ogg_crc(b"") == 0, "CRC of nothing is not 0")
    good = check_ogg_opus_stream(pages, allow_final_eos=True)
    check(not good, f"ffmpeg's own file judged broken: {good}")
    check(check_ogg_opus_stream(pages), "final EOS not reported when not allowed")
    i = 5
    p = pages[i]
    flipped = bytearray(p.raw)
    flipped[-3] ^= 0x40
    cases = {
        "flipped byte": problems_after(pages, i, bytes(flipped)),
        "dropped page": problems_after(pages, i, drop=True),
        "duplicated page": problems_after(pages, i, dup=True),
        "other serial": problems_after(pages, i, rebuild_page(p, serial=p.serial ^ 1)),
        "granule off": problems_after(pages, i, rebuild_page(p, granule=p.granule + 960)),
        "sequence off": problems_after(pages, i, rebuild_page(p, seq=p.seq + 7)),
        "second BOS": problems_after(pages, i, rebuild_page(p, flags=p.flags | 2)),
        "EOS mid-stream": problems_after(pages, i, rebuild_page(p, flags=p.flags | 4)),
        "no OpusHead": problems_after(pages, 0, rebuild_page(pages[0], body=b"OpusHeaX" +
                                                             pages[0].body[8:])),
        "chained again": check_ogg_opus_stream(parse_ogg(data + data)[0], True),
    }
    missed = [k for k, v in cases.items() if not v]
    check(not missed, f"checker missed: {missed}")
    check(fails(lambda: parse_ogg(random_bytes(5000))), "random bytes parsed as Ogg")
    check(fails(lambda: parse_ogg(data[:100] + b"xx" + data[100:])), "2 stray bytes not caught")


@test(timeout=30)
def test_tone_checker(ctx):
    pcm = sine_pcm(440, 2)
    check_tone(pcm, 440, "pure 440")
    check(fails(lambda: check_tone(pcm, 660, "pure 440 as 660")), "660 found in a 440 tone")
    check(fails(lambda: check_tone(bytes(96000), 440, "silence")), "440 found in silence")
    mix = array.array("h", (a + b for a, b in zip(array.array("h", sine_pcm(440, 2, 2000)),
                                                   array.array("h", sine_pcm(660, 2, 2000)))))
    check(fails(lambda: check_tone(mix.tobytes(), 440, "440+660")), "440 dominant in a mix")
    gap = pcm[:96000] + bytes(48000) + pcm[:96000]
    check(fails(lambda: check_tone(gap, 440, "tone with a gap")), "a 0.5 s gap went unseen")
