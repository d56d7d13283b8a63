-- teal's hold (written by teal next to haproxy.cfg; do not edit).
--
-- Each http backend has a last server, `teal_hold`, a backup: HAProxy sends a
-- request there only while no other server of the backend is usable (all
-- down, draining, in maintenance, or between containers), and that includes
-- the retry of a request that was in flight on a server that died. It is a
-- unix socket of HAProxy's own, where the backend's hold frontend runs:
--
--   http-request lua.teal_hold <backend> <max ms> <max held> <paused until ms>
--
-- The request waits here until <backend> has a usable server again, then
-- goes back to <backend> (`txn.teal_ready` set). Past <max ms> (and past a
-- pause: `teal pause` holds every request until <paused until ms>, epoch),
-- or with <max held> requests of the backend already waiting, it goes on
-- without `txn.teal_ready` and the frontend answers 503.
--
-- A worker that is stopping (a reload happened while requests waited) hands
-- its held requests over (`txn.teal_handoff`): the backend sends them to
-- `teal_hold` again, whose socket the new worker now listens on, so they
-- wait on with the new config instead of against the old one.
--
-- `teal held` on the admin socket prints, per backend: holding now, then
-- since this worker started: held, released (a server came), expired (the
-- bound passed), refused (too many held), handed (to a new worker).

-- How often a held request looks again: the added latency once a server is up.
local POLL_MS = 20

local counts = {}
-- backend -> { [token] = deadline in ms }: a held request leaves its entry
-- when it goes on; one whose stream was aborted mid-wait is dropped once
-- its deadline passes, so the count never leaks.
local waiting = {}
local next_token = 0
-- One look per poll serves every held request: backend -> { at, ready }.
local looks = {}
local stopping = { at = -1, value = false }

local function now_ms()
    local t = core.now()
    return t.sec * 1000 + t.usec // 1000
end

local function counters(backend)
    local c = counts[backend]
    if c == nil then
        c = { held = 0, released = 0, expired = 0, refused = 0, handed = 0 }
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

-- `act` counts the backend's usable active servers (UP, with a weight, not
-- draining or in maintenance), those added through the runtime API too; the
-- hold itself is a backup and never counts.
local function ready(backend, now)
    local look = looks[backend]
    if look == nil or now - look.at >= POLL_MS then
        local proxy = core.backends[backend]
        look = { at = now, ready = proxy ~= nil and tonumber(proxy:get_stats().act) > 0 }
        looks[backend] = look
    end
    return look.ready
end

local function worker_stopping(now)
    if now - stopping.at >= POLL_MS then
        stopping = { at = now, value = tonumber(core.get_info().Stopping) == 1 }
    end
    return stopping.value
end

core.register_action("teal_hold", { "http-req" }, function(txn, backend, max_ms, max_held, paused_until)
    local c = counters(backend)
    local start = now_ms()
    if holding(backend, start) >= tonumber(max_held) then
        c.refused = c.refused + 1
        return
    end
    local deadline = start + tonumber(max_ms)
    paused_until = tonumber(paused_until)
    next_token = next_token + 1
    local token = next_token
    waiting[backend][token] = math.max(deadline, paused_until) + 1000
    c.held = c.held + 1
    local outcome = "expired"
    while true do
        local now = now_ms()
        if worker_stopping(now) then
            outcome = "handed"
            break
        end
        if now >= paused_until and ready(backend, now) then
            outcome = "released"
            break
        end
        if now >= deadline and now >= paused_until then
            break
        end
        core.msleep(POLL_MS)
    end
    waiting[backend][token] = nil
    c[outcome] = c[outcome] + 1
    if outcome ~= "expired" then
        txn:set_var("txn.teal_ready", true)
    end
    if outcome == "handed" then
        txn:set_var("txn.teal_handoff", true)
    end
end, 4)

core.register_cli({ "teal", "held" }, "teal held : requests held per backend (teal's hold)", function(applet)
    local now = now_ms()
    local lines = { "# backend holding held released expired refused handed\n" }
    for backend, c in pairs(counts) do
        lines[#lines + 1] = string.format("%s %d %d %d %d %d %d\n", backend, holding(backend, now), c.held,
            c.released, c.expired, c.refused, c.handed)
    end
    applet:send(table.concat(lines))
end)
