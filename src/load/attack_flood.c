/*
 * load/attack_flood: "flood", connections that send nothing. Each is held until the server
 * closes it or the run ends, and replaced at the rate while the run lasts: what an idle
 * connection costs the server, and how soon it lets go of one. The core does all of it; the
 * mode is only its flags (no chunk: nothing is sent, the connection waits for the server).
 */
#include "load/attack_int.h"

const struct atk_mode atk_mode_flood = {
    .pressure = 1,
};
