/*
 * rostrum-captions: the default live-caption recogniser that rostrum spawns per captioned
 * space (captions-cmd).
 *
 * Contract:
 *   stdin   raw PCM, signed 16-bit little-endian, mono, 16 kHz, read until EOF (a live
 *           programme: normally it never ends).
 *   stdout  one JSON object per utterance, one per line, flushed at once:
 *             {"start": S, "end": E, "text": "words of the utterance"}
 *           S and E are seconds (3 decimals) from the first sample read, counted in samples
 *           fed, not by any clock; text is lowercase words, without pocketsphinx's fillers
 *           (<s>, </s>, <sil>, [NOISE], ...) or alternate-pronunciation marks ("(2)").
 *           No partial lines.
 *   stderr  errors only.
 *   exit    0 at EOF (after the last utterance is out) or when stdout is closed (EPIPE);
 *           2 on a bad option or a missing/unloadable model; 1 on a read, write or
 *           decoder error.
 *   options -m DIR  model directory holding en-us/, en-us.lm.bin, cmudict-en-us.dict
 *                   (default $ROSTRUM_CAPTIONS_MODEL, else /usr/share/pocketsphinx/model/en-us)
 *           -h      usage
 *
 * Why pocketsphinx: it is the one offline recogniser Debian packages together with an
 * English model (pocketsphinx, pocketsphinx-en-us), so captions need no network service and
 * nothing outside the distribution. It is an older HMM/n-gram recogniser, small and cheap
 * (about a fifth of one core in real time), and its accuracy shows it: fair on clear read
 * speech, poor on short phrases, names, accents and noise (bench/captions: WER ~0.4 on
 * Debian's "front, center" recordings, "rear" heard as "we're"). Captions from it are a
 * rough aid, not a transcript; a better recogniser can take its place with the same contract.
 *
 * Utterances are cut by pocketsphinx's own voice-activity detector: when it goes from speech
 * to silence the utterance is ended and printed. An utterance is also cut after MAX_UTT_S of
 * audio so a caption never lags the speech by more than that in a talk without pauses.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pocketsphinx.h>

#define RATE 16000
#define BLOCK 2048        /* samples read from stdin at a time */
#define MAX_UTT_S 10
#define DEFAULT_MODEL "/usr/share/pocketsphinx/model/en-us"

struct rc {
    ps_decoder_t *ps;
    int shift;            /* samples per frame (-frate) */
    int prespeech;        /* frames the VAD keeps from before speech (-vad_prespeech) */
    int in_speech;        /* the VAD's state after the last frame fed */
    uint64_t fed;         /* samples fed since the first one read */
    uint64_t utt_at;      /* fed when the current utterance started */
    uint64_t speech_at;   /* fed when the VAD last went to speech */
    char *line;           /* the output line being built */
    size_t cap;
};

static const char *prog = "rostrum-captions";

static void usage(FILE *f)
{
    fprintf(f, "usage: %s [-m MODEL_DIR] [-h]\n"
            "  reads 16 kHz mono s16le PCM on stdin, prints one JSON caption per utterance:\n"
            "  {\"start\": S, \"end\": E, \"text\": \"...\"}\n"
            "  -m DIR  model directory (default $ROSTRUM_CAPTIONS_MODEL, else %s)\n",
            prog, DEFAULT_MODEL);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "%s: out of memory\n", prog);
        exit(1);
    }
    return p;
}

static void put(struct rc *rc, size_t *len, const char *s, size_t n)
{
    if (*len + n + 1 > rc->cap) {
        rc->cap = (*len + n + 1) * 2;
        rc->line = xrealloc(rc->line, rc->cap);
    }
    memcpy(rc->line + *len, s, n);
    *len += n;
    rc->line[*len] = '\0';
}

/* One word into the line, lowercased and JSON-escaped; "(2)"-style alternate marks are cut. */
static void put_word(struct rc *rc, size_t *len, const char *w)
{
    size_t n = strlen(w);
    const char *paren = strchr(w, '(');

    if (paren && paren > w && w[n - 1] == ')')
        n = (size_t)(paren - w);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)w[i];
        char esc[8];

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(rc, len, esc, 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(rc, len, esc, 6);
        } else {
            esc[0] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
            put(rc, len, esc, 1);
        }
    }
}

/* Fillers are <s>, </s>, <sil> and [NOISE]-like entries of the model's filler dictionary. */
static int is_filler(const char *w)
{
    return w[0] == '\0' || w[0] == '<' || w[0] == '[' || w[0] == '+';
}

static void emit(struct rc *rc, double start, double end, size_t textlen)
{
    char head[96];
    int n = snprintf(head, sizeof head, "{\"start\": %.3f, \"end\": %.3f, \"text\": \"",
                     start, end);

    if (fwrite(head, 1, (size_t)n, stdout) != (size_t)n
        || fwrite(rc->line, 1, textlen, stdout) != textlen
        || fputs("\"}\n", stdout) == EOF || fflush(stdout) == EOF) {
        if (errno == EPIPE)
            exit(0);    /* rostrum closed our stdout: it no longer wants captions */
        fprintf(stderr, "%s: stdout: %s\n", prog, strerror(errno));
        exit(1);
    }
}

/*
 * End the utterance and print it. Word times come from the segmentation: this pocketsphinx
 * (5prealpha) numbers frames from the start of the stream, silence included, because its
 * front end counts every sample fed and offsets each utterance by where the VAD let speech
 * in; so frame * shift is the time from our first sample, the clock the contract asks for.
 */
static void finish_utt(struct rc *rc)
{
    double now = (double)rc->fed / RATE;
    double start = -1, end = 0;
    size_t len = 0;

    if (ps_end_utt(rc->ps) < 0) {
        fprintf(stderr, "%s: ps_end_utt failed\n", prog);
        exit(1);
    }
    for (ps_seg_t *seg = ps_seg_iter(rc->ps); seg; seg = ps_seg_next(seg)) {
        const char *w = ps_seg_word(seg);
        int sf, ef;

        if (is_filler(w))
            continue;
        ps_seg_frames(seg, &sf, &ef);
        if (start < 0)
            start = (double)sf * rc->shift / RATE;
        end = (double)(ef + 1) * rc->shift / RATE;
        if (len)
            put(rc, &len, " ", 1);
        put_word(rc, &len, w);
    }
    if (!len) {
        /* No word segmentation (not seen with the n-gram search): the hypothesis string,
         * timed by where the VAD said speech began and now. */
        const char *hyp = ps_get_hyp(rc->ps, NULL);
        char *copy = hyp ? strdup(hyp) : NULL;
        char *save = NULL;
        uint64_t back = (uint64_t)rc->prespeech * (uint64_t)rc->shift;

        if (hyp && !copy) {
            fprintf(stderr, "%s: out of memory\n", prog);
            exit(1);
        }
        for (char *w = copy ? strtok_r(copy, " ", &save) : NULL; w;
             w = strtok_r(NULL, " ", &save)) {
            if (is_filler(w))
                continue;
            if (len)
                put(rc, &len, " ", 1);
            put_word(rc, &len, w);
        }
        free(copy);
        start = (double)(rc->speech_at > rc->utt_at + back ? rc->speech_at - back : rc->utt_at)
                / RATE;
        end = now;
    }
    if (len) {
        /* Keep the times sane whatever the decoder said: within what we have read. */
        if (end > now)
            end = now;
        if (start < 0)
            start = 0;
        if (start > end)
            start = end;
        emit(rc, start, end, len);
    }

    if (ps_start_utt(rc->ps) < 0) {
        fprintf(stderr, "%s: ps_start_utt failed\n", prog);
        exit(1);
    }
    rc->utt_at = rc->speech_at = rc->fed;
    rc->in_speech = ps_get_in_speech(rc->ps);
}

/*
 * Decode n (at most BLOCK) little-endian samples from b and feed them one frame shift at a
 * time: each call then moves the VAD by at most one frame, so a speech->silence transition
 * is seen at the frame it happens and no speech after it slips into the utterance ended.
 */
static void feed(struct rc *rc, const unsigned char *b, size_t n)
{
    static int16 pcm[BLOCK];

    for (size_t i = 0; i < n; i++)
        pcm[i] = (int16)(uint16_t)(b[2 * i] | (unsigned)b[2 * i + 1] << 8);
    for (const int16 *s = pcm; n;) {
        size_t k = n < (size_t)rc->shift ? n : (size_t)rc->shift;
        int sp;

        if (ps_process_raw(rc->ps, s, k, FALSE, FALSE) < 0) {
            fprintf(stderr, "%s: ps_process_raw failed\n", prog);
            exit(1);
        }
        rc->fed += k;
        s += k;
        n -= k;
        sp = ps_get_in_speech(rc->ps);
        if (rc->in_speech && !sp) {
            finish_utt(rc);
        } else if (sp && ps_get_n_frames(rc->ps) >= MAX_UTT_S * (RATE / rc->shift)) {
            finish_utt(rc);
        } else {
            if (sp && !rc->in_speech)
                rc->speech_at = rc->fed;
            rc->in_speech = sp;
        }
    }
}

static int is_dir(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;

    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int main(int argc, char **argv)
{
    const char *model = getenv("ROSTRUM_CAPTIONS_MODEL");
    char hmm[4096], lm[4096], dict[4096];
    static unsigned char buf[BLOCK * 2];
    size_t have = 0;    /* bytes in buf not yet decoded */
    size_t step;        /* bytes per frame shift */
    struct rc rc = {0};
    cmd_ln_t *config;
    int opt;

    if (!model || !*model)
        model = DEFAULT_MODEL;
    while ((opt = getopt(argc, argv, "m:h")) != -1) {
        switch (opt) {
        case 'm':
            model = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if ((size_t)snprintf(hmm, sizeof hmm, "%s/en-us", model) >= sizeof hmm
        || (size_t)snprintf(lm, sizeof lm, "%s/en-us.lm.bin", model) >= sizeof lm
        || (size_t)snprintf(dict, sizeof dict, "%s/cmudict-en-us.dict", model) >= sizeof dict) {
        fprintf(stderr, "%s: model path too long\n", prog);
        return 2;
    }
    if (!is_dir(hmm) || !is_file(lm) || !is_file(dict)) {
        fprintf(stderr, "%s: no pocketsphinx model in %s (want en-us/, en-us.lm.bin, "
                "cmudict-en-us.dict; Debian package pocketsphinx-en-us)\n", prog, model);
        return 2;
    }

    /* A dead reader must come back as EPIPE, so we can exit 0 rather than die of a signal. */
    signal(SIGPIPE, SIG_IGN);

    /* -samprate is the default already; said here because the contract fixes it. */
    config = cmd_ln_init(NULL, ps_args(), TRUE, "-hmm", hmm, "-lm", lm, "-dict", dict,
                         "-samprate", "16000", "-logfn", "/dev/null", NULL);
    if (!config) {
        fprintf(stderr, "%s: pocketsphinx rejected its configuration\n", prog);
        return 2;
    }
    rc.ps = ps_init(config);
    if (!rc.ps) {
        fprintf(stderr, "%s: pocketsphinx could not load the model in %s\n", prog, model);
        return 2;
    }
    rc.shift = (int)(cmd_ln_float32_r(config, "-samprate") / cmd_ln_int32_r(config, "-frate"));
    rc.prespeech = cmd_ln_int32_r(config, "-vad_prespeech");
    step = 2 * (size_t)rc.shift;
    if (step > sizeof buf) {
        fprintf(stderr, "%s: frame shift of %d samples is too long\n", prog, rc.shift);
        return 2;
    }
    if (ps_start_utt(rc.ps) < 0) {
        fprintf(stderr, "%s: ps_start_utt failed\n", prog);
        return 1;
    }

    for (;;) {
        ssize_t r = read(STDIN_FILENO, buf + have, sizeof buf - have);
        size_t use;

        if (r < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "%s: stdin: %s\n", prog, strerror(errno));
            return 1;
        }
        if (r == 0)
            break;
        have += (size_t)r;
        /*
         * Decode whole frame shifts only and keep the rest (a part frame, maybe an odd byte)
         * for the next read: pocketsphinx's live CMN and VAD move per call, so the same
         * audio must make the same calls however the pipe happened to split it.
         */
        use = have / step * step;
        feed(&rc, buf, use / 2);
        memmove(buf, buf + use, have - use);
        have -= use;
    }
    feed(&rc, buf, have / 2);    /* the last part frame; an odd byte at EOF is dropped */
    finish_utt(&rc);

    ps_free(rc.ps);
    cmd_ln_free_r(config);
    free(rc.line);
    return 0;
}
