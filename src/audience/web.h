/* web: the files of web/, compiled into the binary (scripts/gen-web-assets). */
#ifndef ROSTRUM_AUDIENCE_WEB_H
#define ROSTRUM_AUDIENCE_WEB_H

struct web_file {
    const char *path, *type;
    const unsigned char *start, *end;
};

/* Every file of web/ as "/<name>", ended by an entry with a NULL path. */
extern const struct web_file web_files[];

#endif
