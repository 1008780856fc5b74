/* web: the files of web/, compiled into the binary (scripts/gen-web-assets), and the names
 * they take from the mount namespace. */
#ifndef ROSTRUM_WEB_WEB_H
#define ROSTRUM_WEB_WEB_H

#include <stddef.h>

struct web_file {
    const char *path, *type;
    const unsigned char *start, *end;
};

/* Every file of web/ as "/<name>", ended by an entry with a NULL path. */
extern const struct web_file web_files[];

/* The file served at <path> ("/" is index.html): 0 with its bytes and type, or -1. */
int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type);

/* 1 if <name> (no leading '/') is a name the ports serve themselves, which no mount may take:
 * every file of web/ (from the asset table, so a new page is reserved when it is added), the
 * audience port's documents and the first component of every route. */
int web_reserved(const char *name);

#endif
