#include "stage/control.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "stage/stage.h"

const char *const role_name_table[ROLES] = {"listener", "speaker", "cohost", "host"};

const char *role_name(int role)
{
    return role >= 0 && role < ROLES ? role_name_table[role] : "?";
}

int role_parse(const char *s)
{
    for (int i = 0; i < ROLES; i++)
        if (strcmp(s, role_name_table[i]) == 0)
            return i;
    return -1;
}

int control_parse(const char *msg, size_t len, struct control *out)
{
    static const struct {
        const char *name;
        enum control_type type;
    } types[] = {{"request", CTL_REQUEST}, {"cancel_request", CTL_CANCEL_REQUEST},
                 {"mute", CTL_MUTE},       {"promote", CTL_PROMOTE},
                 {"demote", CTL_DEMOTE},   {"remove", CTL_REMOVE},
                 {"end", CTL_END},         {"invite", CTL_INVITE},
                 {"format", CTL_FORMAT},   {"ping", CTL_PING},
                 {"invite_hand", CTL_INVITE_HAND}, {"dismiss_hand", CTL_DISMISS_HAND},
                 {"go_live", CTL_GO_LIVE}};
    *out = (struct control){.type = CTL_UNKNOWN, .role = -1, .muted = 1};
    if (len > CONTROL_MAX)
        return -2;
    cJSON *j = cJSON_ParseWithLength(msg, len);
    const cJSON *type = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "type") : NULL;
    if (!cJSON_IsString(type)) {
        cJSON_Delete(j);
        return -1;
    }
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(type->valuestring, types[i].name) == 0)
            out->type = types[i].type;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    if (cJSON_IsNumber(id) && id->valuedouble >= 0 && id->valuedouble <= 4294967295.0) {
        out->has_id = 1;
        out->id = (uint32_t)id->valuedouble;
    }
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(j, "role");
    if (cJSON_IsString(role))
        out->role = role_parse(role->valuestring);
    out->muted = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "muted"));
    out->pcm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "pcm"));
    out->reusable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "reusable"));
    const cJSON *hand = cJSON_GetObjectItemCaseSensitive(j, "hand");
    if (cJSON_IsString(hand) && strlen(hand->valuestring) == 16) {
        uint64_t v = 0;
        int ok = 1;
        for (const char *p = hand->valuestring; *p; p++) {
            char c = *p;
            int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
            ok &= d >= 0;
            v = v << 4 | (uint64_t)(d & 15);
        }
        out->hand = ok ? v : 0;
    }
    cJSON_Delete(j);
    return 0;
}
