/*
 * web: the static pages of the audience port, compiled in by web_assets.S so that a server
 * binary needs no files beside it.
 */
#include <string.h>

#include "server/server.h"

extern const unsigned char web_index_html[], web_index_html_end[];
extern const unsigned char web_app_js[], web_app_js_end[];
extern const unsigned char web_style_css[], web_style_css_end[];

int web_asset(const char *path, const unsigned char **data, size_t *len, const char **type)
{
    static const struct {
        const char *path, *type;
        const unsigned char *start, *end;
    } assets[] = {
        {"/", "text/html; charset=utf-8", web_index_html, web_index_html_end},
        {"/index.html", "text/html; charset=utf-8", web_index_html, web_index_html_end},
        {"/app.js", "text/javascript; charset=utf-8", web_app_js, web_app_js_end},
        {"/style.css", "text/css; charset=utf-8", web_style_css, web_style_css_end},
    };
    for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++) {
        if (strcmp(path, assets[i].path) == 0) {
            *data = assets[i].start;
            *len = (size_t)(assets[i].end - assets[i].start);
            *type = assets[i].type;
            return 0;
        }
    }
    return -1;
}
