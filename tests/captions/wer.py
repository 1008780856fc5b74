"""Word error rate: the word-level Levenshtein distance between a reference and a hypothesis,
split into substitutions, deletions and insertions, over the reference's length."""


def wer(ref_words, hyp_words):
    """Return (rate, S, D, I, N) with rate = (S + D + I) / N, N = len(ref_words). Of the
    alignments with the fewest edits, the one with the most substitutions is counted. With an
    empty reference the rate is 0.0 for an empty hypothesis, else inf."""
    ref, hyp = list(ref_words), list(hyp_words)
    n, m = len(ref), len(hyp)
    # d[i][j] = (edits, subs, dels, ins) aligning ref[:i] with hyp[:j]
    d = [[(0, 0, 0, 0)] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        d[i][0] = (i, 0, i, 0)
    for j in range(1, m + 1):
        d[0][j] = (j, 0, 0, j)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            e, s, dl, ins = d[i - 1][j - 1]
            same = ref[i - 1] == hyp[j - 1]
            best = (e, s, dl, ins) if same else (e + 1, s + 1, dl, ins)
            e, s, dl, ins = d[i - 1][j]
            best = min(best, (e + 1, s, dl + 1, ins), key=lambda t: (t[0], -t[1]))
            e, s, dl, ins = d[i][j - 1]
            best = min(best, (e + 1, s, dl, ins + 1), key=lambda t: (t[0], -t[1]))
            d[i][j] = best
    e, s, dl, ins = d[n][m]
    if n == 0:
        return (0.0 if e == 0 else float("inf")), s, dl, ins, n
    return e / n, s, dl, ins, n


if __name__ == "__main__":
    assert wer("a b c".split(), "a b c".split()) == (0.0, 0, 0, 0, 3)
    assert wer("a b c".split(), "a x c".split())[1:] == (1, 0, 0, 3)
    assert wer("a b c".split(), "a c".split())[1:] == (0, 1, 0, 3)
    assert wer("a b c".split(), "a b c d".split())[1:] == (0, 0, 1, 3)
    assert wer("a b".split(), []) == (1.0, 0, 2, 0, 2)
    assert wer([], []) == (0.0, 0, 0, 0, 0)
    print("ok")
