-- teal's hold (written by teal next to haproxy.cfg; do not edit).
--
-- While a backend has no usable server (all down, draining, in maintenance,
-- or between containers), a new request waits here instead of getting a 503
-- at once, and goes on as soon as a server is usable:
--
--   http-request lua.teal_hold <max ms> <max held> if { nbsrv eq 0 }
--
-- Past <max ms> it goes on with no server (HAProxy answers 503). With
-- <max held> requests of the backend already waiting it goes on at once, so
-- a service that never comes back cannot pile up connections.
--
-- `teal held` on the admin socket prints, per backend: holding now, then
-- since this worker started: held, released (a server came), expired (the
-- bound passed), refused (too many held).

-- How often a held request looks again: the added latency once a server is up.
local POLL_MS = 20

local counts = {}
-- backend -> { [token] = deadline in ms }: a held request leaves its entry
-- when it goes on; one whose stream was aborted mid-wait is dropped once
-- its deadline passes, so the count never leaks.
local waiting = {}
local next_token = 0

local function now_ms()
    local t = core.now()
    return t.sec * 1000 + t.usec // 1000
end

local function counters(backend)
    local c = counts[backend]
    if c == nil then
        c = { held = 0, released = 0, expired = 0, refused = 0 }
        counts[backend] = c
        waiting[backend] = {}
    end
    return c
end

local function holding(backend, now)
    local n = 0
    for token, deadline in pairs(waiting[backend]) do
        if deadline < now then
            waiting[backend][token] = nil
        else
            n = n + 1
        end
    end
    return n
end

core.register_action("teal_hold", { "http-req" }, function(txn, max_ms, max_held)
    local backend = txn.f:be_name()
    local c = counters(backend)
    local start = now_ms()
    if holding(backend, start) >= tonumber(max_held) then
        c.refused = c.refused + 1
        return
    end
    local deadline = start + tonumber(max_ms)
    next_token = next_token + 1
    local token = next_token
    waiting[backend][token] = deadline + 1000
    c.held = c.held + 1
    while txn.f:nbsrv(backend) == 0 and now_ms() < deadline do
        core.msleep(POLL_MS)
    end
    waiting[backend][token] = nil
    if txn.f:nbsrv(backend) == 0 then
        c.expired = c.expired + 1
    else
        c.released = c.released + 1
    end
end, 2)

core.register_cli({ "teal", "held" }, "teal held : requests held per backend (teal's hold)", function(applet)
    local now = now_ms()
    local lines = { "# backend holding held released expired refused\n" }
    for backend, c in pairs(counts) do
        lines[#lines + 1] = string.format("%s %d %d %d %d %d\n", backend, holding(backend, now), c.held,
            c.released, c.expired, c.refused)
    end
    applet:send(table.concat(lines))
end)
