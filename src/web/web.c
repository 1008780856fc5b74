/*
 * web: the static pages of the audience port. "/" is index.html; every other file of web/ is
 * served under its own name. Built in, so a server binary needs no files beside it.
 */
#include "web/web.h"

#include <string.h>

int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type)
{
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (const struct web_file *f = web_files; f->path; f++) {
        if (strcmp(path, f->path) == 0) {
            *data = f->start;
            *len = (size_t)(f->end - f->start);
            *type = f->type;
            return 0;
        }
    }
    return -1;
}

int web_reserved(const char *name)
{
    /* the audience port's documents (audience.c) and the first component of every route
     * (audience.c, stageport/api.c) */
    static const char *const routes[] = {
        "metrics", "status-json.xsl", "state", "join", "api", "ws", "dashboard", "dashboard.json",
        "relay.json", "hls", "recordings", "recordings.json"};
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        if (strcmp(name, routes[i]) == 0)
            return 1;
    for (const struct web_file *f = web_files; f->path; f++)
        if (strcmp(name, f->path + 1) == 0)
            return 1;
    return 0;
}
