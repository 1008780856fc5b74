#
# Varnish (Debian 12: 7.1) as a cache tier in front of rostrum's audience port (issue 11).
#   varnishd -a :8080 -f /etc/varnish/rostrum.vcl -s malloc,256m
# docs/caches.md says why each rule is there. The same split as docs/cache/nginx.conf: HLS
# and the state document cached as rostrum's Cache-Control says, concurrent misses for one
# object coalesced (Varnish's waiting list: one fetch, every waiter woken when it completes),
# streams piped, beacons passed.
#
vcl 4.1;

import std;

backend rostrum {
    .host = "127.0.0.1";   # rostrum's audience port
    .port = "8000";
    # a blocking playlist reload is held until its part exists, at most 3 target durations
    .first_byte_timeout = 10s;
    .between_bytes_timeout = 10s;
}

sub vcl_recv {
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);            # beacons are POSTs too
    }
    if (req.url ~ "^/beacon/") {
        return (pass);            # counted by rostrum, never cached
    }
    if (req.url ~ "^/state/[^/?]+\.json") {
        set req.url = regsub(req.url, "\?.*$", "");
        unset req.http.Cookie;
        return (hash);
    }
    if (req.url ~ "\.(m3u8|m4s|mp4|m4a|aac|ts)(\?|$)") {
        # Only the delivery directives (_HLS_msn, _HLS_part, _HLS_skip) change an answer:
        # the others (a cache buster) go, and the order is made one, so every player's
        # blocking reload of one part is one object.
        set req.url = regsuball(req.url, "([?&])(?!_HLS_)[^&]*", "\1");
        set req.url = regsuball(req.url, "&&+", "&");
        set req.url = regsub(req.url, "\?&", "?");
        set req.url = regsub(req.url, "[?&]$", "");
        set req.url = std.querysort(req.url);
        unset req.http.Cookie;
        return (hash);
    }
    # streams (Ogg, AAC, MP3) never end: piped, not buffered or cached
    return (pipe);
}

sub vcl_pipe {
    set bereq.http.Connection = "close";
}

sub vcl_backend_response {
    # rostrum's Cache-Control alone decides: an answer without one (a 404 for a name that does
    # not exist yet) is not kept, where Varnish would keep it for default_ttl (2 min). With
    # one, Varnish honours max-age, and no-store or no-cache make the object uncacheable in
    # the built-in VCL that runs after this.
    if (!beresp.http.Cache-Control && !beresp.http.Expires) {
        set beresp.uncacheable = true;
        set beresp.ttl = 0s;
        return (deliver);
    }
    # a little grace lets an expired plain playlist be served while one fetch refreshes it
    set beresp.grace = 1s;
}

sub vcl_deliver {
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
