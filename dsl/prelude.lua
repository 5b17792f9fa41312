-- prelude.lua — the pipeline DSL: the globals a pipeline script sees (pipeline, task, gate,
-- approval, foreach, param, params, run, signal, on_signal) and the checks that turn what it
-- declares into a plan. dsl/dsl.c runs this file once per compile in a fresh Lua state, after
-- opening only the safe libraries and installing the memory, instruction and time limits. It
-- passes `host` (C helpers) and gets back the sandbox environment, `finish` and the error list.
-- This file is not the sandbox (dsl.c is) and it never sorts with Lua's `<` where the order
-- reaches the plan (that would follow the locale): host.sorted_keys and dsl/link.c sort bytewise.

local host = ...

local type, next, select, tostring, error, rawget, rawset, rawlen, setmetatable, getmetatable, load, pairs =
    type, next, select, tostring, error, rawget, rawset, rawlen, setmetatable, getmetatable, load, pairs
-- host.find is string.find before dsl.c wrapped it: the prelude's own patterns are linear (each
-- is anchored, with at most one repetition), so they need no guard and are on the hot path.
local sfind, sfmt, ssub = host.find, string.format, string.sub
local mtype, mhuge, tointeger = math.type, math.huge, math.tointeger
local utf8len = utf8.len
local host_line, host_duration, host_cron = host.line, host.duration, host.cron
local host_suggest, sorted_keys = host.suggest, host.sorted_keys

-- Tables the C side turns into JSON arrays (ARRAY), or arrays sorted bytewise (SORTED: strings,
-- or objects by their "name"). Every other table becomes a JSON object.
local ARRAY, SORTED = {}, {}
local function array(t) return setmetatable(t, ARRAY) end
local EMPTY = {}                               -- shared; nothing writes to plan tables later
local NO_OUTPUTS = setmetatable({}, SORTED)

-- Private keys: the script cannot name them, so it cannot forge a task handle or a parameter.
local HANDLE, PARAM, OUTOF = {}, {}, {}
-- What param.* and on_signal checked, by the handle the script got: the script cannot reach
-- these tables, so it cannot change a declaration after it was checked (a handle's own fields
-- are ignored; rawset on it changes nothing here). Weak keys: a dropped handle costs nothing.
local PARAMS = setmetatable({}, { __mode = "k" })
local TRIGGERS = setmetatable({}, { __mode = "k" })

local E = {}  -- { { line, message }, ... }; dsl.c sorts them by line
local function err(line, fmt, ...) E[#E + 1] = { line, sfmt(fmt, ...) } end

local function describe(v)
    local t = type(v)
    if t == "string" then
        if #v > 40 then v = ssub(v, 1, 37) .. "..." end
        return sfmt('the string "%s"', v)
    elseif t == "number" or t == "boolean" then return tostring(v)
    elseif t == "nil" then return "nil"
    elseif t == "table" and rawget(v, HANDLE) then return sfmt('%s "%s"', rawget(v, HANDLE), v.name)
    end
    return "a " .. t
end

-- " (did you mean "x"?)" for the candidate closest to word, or "".
local function suggest(word, candidates)
    if type(word) ~= "string" then return "" end
    return host_suggest(word, candidates)
end

local function set_of(list)
    local s = {}
    for i = 1, #list do s[list[i]] = true end
    return s
end

-- Reports fields of t that are not in `allowed` (a list); ctx names the owner ('task "train"').
local function check_fields(line, ctx, t, allowed, allowed_set, prefix)
    local bad, positional
    for k in next, t do
        if type(k) ~= "string" then positional = true
        elseif not allowed_set[k] then bad = bad or {}; bad[#bad + 1] = k end
    end
    if positional then err(line, "%s has a value without a field name (write name = value)", ctx) end
    if bad then
        bad = sorted_keys(set_of(bad))
        for i = 1, #bad do
            err(line, '%s has unknown field "%s%s"%s', ctx, prefix or "", bad[i], suggest(bad[i], allowed))
        end
    end
end

local NAME_RE = "^[a-z][a-z0-9_-]*$"
local IDENT_RE = "^[%a_][%w_]*$"

local function valid_name(line, what, name)
    if type(name) ~= "string" then
        err(line, '%s needs a name: write %s "name" { ... }, not %s', what, what, describe(name))
        return false
    end
    if #name > 63 or not sfind(name, NAME_RE) then
        err(line, '%s name "%s" is invalid: use lowercase letters, digits, "-" and "_", starting with a letter (at most 63 characters)',
            what, name)
        return false
    end
    return true
end

---------------------------------------------------------------------------------------------
-- Typed fields. Each returns the value in plan form, or nil after recording an error.

-- Text for the plan: UTF-8, and no NUL byte (C compares names with strcmp, and PostgreSQL's
-- jsonb refuses \u0000). `what` is the field, for the message.
local function text_ok(line, ctx, what, v)
    if not utf8len(v) then err(line, "%s: %s is not valid UTF-8", ctx, what) return false end
    if sfind(v, "\0", 1, true) then err(line, "%s: %s contains a NUL byte", ctx, what) return false end
    return true
end

local function want_string(line, ctx, field, v)
    if type(v) ~= "string" then err(line, "%s: %s must be a string, not %s", ctx, field, describe(v)) return nil end
    if not text_ok(line, ctx, field, v) then return nil end
    return v
end

local function want_int(line, ctx, field, v, min, max)
    if type(v) == "number" and mtype(v) == "float" and v == v and v % 1 == 0 and v >= -2^53 and v <= 2^53 then
        v = tointeger(v)
    end
    if mtype(v) ~= "integer" then err(line, "%s: %s must be an integer, not %s", ctx, field, describe(v)) return nil end
    if min and v < min then err(line, "%s: %s must be at least %d, not %d", ctx, field, min, v) return nil end
    if max and v > max then err(line, "%s: %s must be at most %d, not %d", ctx, field, max, v) return nil end
    return v
end

local function want_number(line, ctx, field, v, min)
    if type(v) ~= "number" or v ~= v or v == mhuge or v == -mhuge then
        err(line, "%s: %s must be a number, not %s", ctx, field, describe(v))
        return nil
    end
    if min and v < min then err(line, "%s: %s must be at least %s, not %s", ctx, field, min, v) return nil end
    return v + 0.0  -- 2 and 2.0 give the same plan
end

local function want_bool(line, ctx, field, v)
    if type(v) ~= "boolean" then err(line, "%s: %s must be true or false, not %s", ctx, field, describe(v)) return nil end
    return v
end

local function want_duration(line, ctx, field, v)
    if type(v) ~= "string" then
        err(line, '%s: %s must be a duration string like "30m", not %s', ctx, field, describe(v))
        return nil
    end
    local ms = host_duration(v)
    if not ms then err(line, '%s: %s "%s" is not a duration (write e.g. "90s", "30m" or "1h30m")', ctx, field, v) end
    return ms
end

local function want_table(line, ctx, field, v)
    if type(v) ~= "table" or rawget(v, HANDLE) then
        err(line, "%s: %s must be a table, not %s", ctx, field, describe(v))
        return nil
    end
    return v
end

-- A value for `with`, trigger params and the like: strings, numbers, booleans, and lists or
-- maps of them. An empty table is an empty list. The value sits at base[key]; the path shown in
-- messages ("with.data[2]") is built only when there is something to say.
local function path_of(base, key)
    return type(key) == "number" and base .. "[" .. key .. "]" or base .. "." .. tostring(key)
end

local function want_value(line, ctx, base, key, v, depth)
    local t = type(v)
    if t == "string" then
        if text_ok(line, ctx, path_of(base, key), v) then return v end
        return nil
    elseif t == "boolean" then return v
    elseif t == "number" then
        if v ~= v or v == mhuge or v == -mhuge then
            err(line, "%s: %s must be a finite number", ctx, path_of(base, key))
            return nil
        end
        return v
    elseif t == "table" then
        local path = path_of(base, key)
        local kind = rawget(v, HANDLE)
        if kind == "task" then
            err(line, "%s: %s is a task; pass one of its outputs instead (%s.outputs.NAME)", ctx, path, v.name)
            return nil
        elseif kind == "group" then
            err(line, "%s: %s is a foreach group; pass its outputs instead (%s.outputs.NAME, a list)", ctx, path, v.name)
            return nil
        elseif PARAMS[v] then
            err(line, "%s: %s is a parameter declaration; declare it in pipeline params and use params.NAME here", ctx, path)
            return nil
        end
        if depth > 16 then err(line, "%s: %s is nested too deeply", ctx, path) return nil end
        local count, n = 0, rawlen(v)
        for _ in next, v do count = count + 1 end
        local is_list = count == n
        for i = 1, is_list and n or 0 do
            if rawget(v, i) == nil then is_list = false break end
        end
        local out, ok = {}, true
        if is_list then
            for i = 1, n do
                local x = want_value(line, ctx, path, i, rawget(v, i), depth + 1)
                if x == nil then ok = false end
                out[i] = x
            end
            return ok and array(out) or nil
        end
        for k, x in next, v do
            if type(k) ~= "string" then
                err(line, "%s: %s mixes list items and named fields", ctx, path)
                return nil
            end
            if not utf8len(k) then
                err(line, "%s: %s has a key that is not valid UTF-8", ctx, path)
                return nil
            end
            if sfind(k, "\0", 1, true) then
                err(line, "%s: %s has a key that contains a NUL byte", ctx, path)
                return nil
            end
            x = want_value(line, ctx, path, k, x, depth + 1)
            if x == nil then ok = false end
            out[k] = x
        end
        return ok and out or nil
    end
    err(line, "%s: %s must be a string, number, boolean or table, not %s", ctx, path_of(base, key), describe(v))
    return nil
end

-- A map of values, keyed by names matching key_re.
local function want_map(line, ctx, field, v, key_re, key_what)
    if want_table(line, ctx, field, v) == nil then return nil end
    local out = {}
    for k, x in next, v do
        if type(k) ~= "string" or not sfind(k, key_re) then
            err(line, "%s: %s keys must be %s, not %s", ctx, field, key_what, describe(k))
        else
            out[k] = want_value(line, ctx, field, k, x, 1)
        end
    end
    return out
end

local function want_names(line, ctx, field, v)  -- after = task | group | "name" | { ... }
    local out = {}
    local function one(x, where)
        if type(x) == "string" then out[#out + 1] = x
        elseif type(x) == "table" and rawget(x, HANDLE) then out[#out + 1] = x.name
        else err(line, "%s: %s must name a task (a task, a foreach group or a string), not %s", ctx, where, describe(x)) end
    end
    if type(v) == "table" and not rawget(v, HANDLE) then
        for i = 1, rawlen(v) do one(rawget(v, i), sfmt("%s[%d]", field, i)) end
    else
        one(v, field)
    end
    return out
end

---------------------------------------------------------------------------------------------
-- Declarations. Each task-like declaration becomes its plan table right away (so a spec table
-- the script changes afterwards cannot change it); names, references, defaults and the graph
-- are resolved by dsl/link.c once the script is done.

local decls = {}     -- plan tables of tasks, gates and approvals, in declaration order
local dline = {}     -- dline[i]: the declaration's line
local dafter = {}    -- dafter[i]: explicit `after` names, or false
local dpartial = {}  -- dpartial[i]: { retries =, resources =, trigger_rule = } as written, or false
local byname = {}    -- name -> index in decls, or a group { members =, line = }
local pending = {}   -- { kind, name, line, done } for each `task "x"` awaiting its body
local pipe           -- the pipeline declaration, once seen

local GATE_FIELDS = { "after", "baseline", "change", "description", "metrics", "model", "predicate", "thresholds",
                      "trigger_rule" }
local APPROVAL_FIELDS = { "after", "description", "message", "timeout", "trigger_rule" }
local DEFAULT_FIELDS = { "priority", "resources", "retries", "timeout", "trigger_rule" }
local GATE_SET, APPROVAL_SET, DEFAULT_SET = set_of(GATE_FIELDS), set_of(APPROVAL_FIELDS), set_of(DEFAULT_FIELDS)

-- Task bodies, retries, resources and trigger rules are checked by dsl/task.c: they are read
-- for every task. Same messages, same plan form.
local C = host.bind(E, ARRAY, SORTED, EMPTY, NO_OUTPUTS, HANDLE, PARAM)
local c_task_body, c_retries, c_resources, c_trigger_rule = C.task_body, C.retries, C.resources, C.trigger_rule
local function want_trigger_rule(line, ctx, v) return c_trigger_rule(v, ctx, line) end
local function want_retries(line, ctx, v) return c_retries(v, ctx, line) end
local function want_resources(line, ctx, v) return c_resources(v, ctx, line) end

local function task_body(t, i, ctx, spec, line)
    dpartial[i] = c_task_body(t, spec, ctx, line) or false
end

local function bounds(line, ctx, field, v)  -- { accuracy = { min = 0.9 }, ... } -> plan form
    if want_table(line, ctx, field, v) == nil then return {} end
    local out = {}
    local keys = sorted_keys(v)
    for i = 1, #keys do
        local metric, b = keys[i], rawget(v, keys[i])
        local where = field .. "." .. tostring(metric)
        if type(metric) ~= "string" or metric == "" or not utf8len(metric) then
            err(line, "%s: %s must map metric names to { min = ..., max = ... }", ctx, field)
        elseif type(b) ~= "table" then
            err(line, "%s: %s must be a table like { min = 0.9 } or { max = 0.4 }, not %s", ctx, where, describe(b))
        else
            check_fields(line, ctx, b, { "max", "min" }, { max = true, min = true }, where .. ".")
            local r = {}
            if b.min ~= nil then r.min = want_number(line, ctx, where .. ".min", b.min) end
            if b.max ~= nil then r.max = want_number(line, ctx, where .. ".max", b.max) end
            if b.min == nil and b.max == nil then err(line, "%s: %s needs min or max", ctx, where) end
            if r.min and r.max and r.min > r.max then err(line, "%s: %s has min greater than max", ctx, where) end
            out[metric] = r
        end
    end
    return out
end

local function gate_body(t, i, ctx, spec, line)
    check_fields(line, ctx, spec, GATE_FIELDS, GATE_SET)
    local g = { metrics_from = "", model = "", baseline = "production", thresholds = {}, change = {} }
    t.gate = g
    if spec.metrics ~= nil then
        local names = want_names(line, ctx, "metrics", spec.metrics)
        if #names > 1 then err(line, "%s: metrics must name one task", ctx) end
        g.metrics_from = names[1] or ""
    end
    if spec.model ~= nil then g.model = want_string(line, ctx, "model", spec.model) or "" end
    if spec.baseline ~= nil then g.baseline = want_string(line, ctx, "baseline", spec.baseline) or "production" end
    if spec.thresholds ~= nil then g.thresholds = bounds(line, ctx, "thresholds", spec.thresholds) end
    if spec.change ~= nil then g.change = bounds(line, ctx, "change", spec.change) end
    if spec.predicate ~= nil and want_string(line, ctx, "predicate", spec.predicate) then
        local p = spec.predicate
        -- An expression ("m.evaluate.f1 >= 0.8") or a chunk with `return`; the plan always holds a chunk.
        local chunk = sfind(p, "%f[%w_]return%f[^%w_]") and p or "return " .. p
        local ok, msg = load(chunk, "=predicate", "t", {})
        if not ok then err(line, "%s: predicate does not parse: %s", ctx, msg) else g.predicate = chunk end
    end
    if spec.thresholds == nil and spec.change == nil and spec.predicate == nil then
        err(line, "%s has nothing to check (give thresholds, change or predicate)", ctx)
    end
    if (next(g.thresholds) ~= nil or next(g.change) ~= nil) and g.metrics_from == "" then
        err(line, "%s: thresholds and change need metrics = TASK (the task whose metrics are compared)", ctx)
    end
    if next(g.change) ~= nil and g.model == "" then
        err(line, '%s: change thresholds need model = "NAME" (the registry model whose %s version is the baseline)',
            ctx, g.baseline)
    end
    if spec.trigger_rule ~= nil then dpartial[i] = { trigger_rule = want_trigger_rule(line, ctx, spec.trigger_rule) } end
end

local function approval_body(t, i, ctx, spec, line)
    check_fields(line, ctx, spec, APPROVAL_FIELDS, APPROVAL_SET)
    local a = { message = sfmt('Approve "%s"?', t.name), timeout_ms = 0 }
    t.approval = a
    if spec.message ~= nil then a.message = want_string(line, ctx, "message", spec.message) or a.message end
    if spec.timeout ~= nil then a.timeout_ms = want_duration(line, ctx, "timeout", spec.timeout) or 0 end
    if spec.trigger_rule ~= nil then dpartial[i] = { trigger_rule = want_trigger_rule(line, ctx, spec.trigger_rule) } end
end

local BODIES = { task = task_body, gate = gate_body, approval = approval_body }

local HANDLE_MT = { __metatable = false }
local OUTPUTS_MT = { __metatable = false }
function OUTPUTS_MT.__index(o, out)
    local h = rawget(o, OUTOF)
    if type(out) ~= "string" then error(sfmt("%s.outputs needs an output name", h.name), 2) end
    if rawget(h, HANDLE) == "group" then  -- a fresh list each time: the script may change it
        local refs = {}
        for i = 1, #h.tasks do refs[i] = "${tasks." .. h.tasks[i].name .. ".outputs." .. out .. "}" end
        return refs
    end
    local ref = "${tasks." .. h.name .. ".outputs." .. out .. "}"
    rawset(o, out, ref)  -- the next use is a plain field
    return ref
end
function OUTPUTS_MT.__newindex() error("outputs are read-only", 2) end
function HANDLE_MT.__index(h, k)
    if k == "outputs" then
        local o = setmetatable({ [OUTOF] = h }, OUTPUTS_MT)
        rawset(h, "outputs", o)
        return o
    end
    error(sfmt('%s "%s" has no field "%s"%s', rawget(h, HANDLE), rawget(h, "name"), tostring(k),
        suggest(k, { "name", "outputs", "tasks" })), 2)
end

local function register(name, entry, line)
    local prev = byname[name]
    if prev then
        local pline = type(prev) == "number" and dline[prev] or prev.line
        err(line, 'duplicate task name "%s" (first declared at line %d)', name, pline)
        return false
    end
    byname[name] = entry
    return true
end

local function declare(kind, name, spec, line, group)
    local ok = valid_name(line, kind, name)
    local shown = type(name) == "string" and name or "?"
    local ctx = kind .. ' "' .. shown .. '"'
    local i = #decls + 1
    -- Every field a task may get, so that the table is sized once (nil fields take no room later).
    local t = { name = shown, kind = kind, description = "", group = group, step = nil, command = nil, with = nil,
                env = nil, outputs = nil, timeout_ms = nil, priority = nil }
    decls[i], dline[i], dafter[i], dpartial[i] = t, line, false, false
    if ok then register(name, i, line) end
    if type(spec) ~= "table" or rawget(spec, HANDLE) then
        err(line, "%s needs a body: %s \"%s\" { ... }, not %s", ctx, kind, shown, describe(spec))
        spec = {}
    end
    if spec.description ~= nil then t.description = want_string(line, ctx, "description", spec.description) or "" end
    if spec.after ~= nil then dafter[i] = want_names(line, ctx, "after", spec.after) end
    BODIES[kind](t, i, ctx, spec, line)
    return setmetatable({ [HANDLE] = "task", name = shown }, HANDLE_MT)
end

local function declarer(kind)
    return function(name)
        local line = host_line()
        if type(name) == "table" then  -- task { ... } without a name
            valid_name(line, kind, name)
            return setmetatable({ [HANDLE] = "task", name = "?" }, HANDLE_MT)
        end
        local p = { kind, name, line, false }
        pending[#pending + 1] = p
        return function(spec)
            p[4] = true
            return declare(kind, name, spec, line)
        end
    end
end

local function foreach(name, items, fn)
    local line = host_line()
    local ok = valid_name(line, "foreach", name)
    local shown = type(name) == "string" and name or "?"
    local group = { members = {}, line = line }
    local h = setmetatable({ [HANDLE] = "group", name = shown, tasks = {} }, HANDLE_MT)
    if ok then register(name, group, line) end
    if type(items) ~= "table" or rawget(items, HANDLE) then
        err(line, 'foreach "%s": items must be a list, not %s', shown, describe(items))
        return h
    end
    if type(fn) ~= "function" then
        err(line, 'foreach "%s": the third argument must be a function(item, index) returning a task body, not %s',
            shown, describe(fn))
        return h
    end
    local n = rawlen(items)
    if n == 0 then err(line, 'foreach "%s" has no items', shown) end
    for i = 1, n do
        local member = shown .. "-" .. i
        local spec = fn(rawget(items, i), i)
        if type(spec) ~= "table" or rawget(spec, HANDLE) then
            err(line, 'foreach "%s": the function must return a task body (a table) for item %d, not %s', shown, i,
                describe(spec))
            spec = { step = "noop" }
        end
        local th = declare("task", member, spec, line, shown)
        group.members[i] = member
        h.tasks[i] = th
    end
    return h
end

---------------------------------------------------------------------------------------------
-- Parameters, references and the pipeline.

-- The default of a parameter of type ptype, checked; nil after recording why not.
local function want_default(line, ctx, ptype, default)
    if ptype == "number" then return want_number(line, ctx, "the default", default)
    elseif ptype == "int" then return want_int(line, ctx, "the default", default)
    elseif ptype == "bool" then return want_bool(line, ctx, "the default", default)
    end
    return want_string(line, ctx, "the default", default)
end

local PARAM_TYPES = { number = true, int = true, string = true, bool = true }

local function param_ctor(ptype)
    return function(default, description)
        local line = host_line()
        local p = { type = ptype, line = line, description = "" }
        local ctx = "param." .. ptype .. "()"
        if description ~= nil then p.description = want_string(line, ctx, "the description", description) or "" end
        if default ~= nil then p.default = want_default(line, ctx, ptype, default) end
        -- reads see the checked fields (all scalars); writes are refused
        local h = setmetatable({ [PARAM] = true }, { __metatable = false, __index = p, __newindex = function()
            error("a parameter declaration is read-only: declare a new one with param." .. ptype .. "(...)", 2)
        end })
        PARAMS[h] = p
        return h
    end
end

local param = { number = param_ctor("number"), int = param_ctor("int"), string = param_ctor("string"),
                bool = param_ctor("bool") }
setmetatable(param, { __metatable = false, __index = function(_, k)
    error(sfmt('param.%s does not exist: use param.number, param.int, param.string or param.bool%s', tostring(k),
        suggest(k, { "bool", "int", "number", "string" })), 2)
end })

-- params.lr, run.id, signal.subject: placeholders the runner fills in ("${params.lr}").
local function placeholders(ns)
    return setmetatable({}, { __metatable = false,
        __index = function(p, k)
            if type(k) ~= "string" then error(ns .. " fields are names", 2) end
            local ref = "${" .. ns .. "." .. k .. "}"
            rawset(p, k, ref)
            return ref
        end,
        __newindex = function() error(ns .. " is read-only", 2) end })
end

-- model("churn") / model("churn", "staging") / model("churn", 3): a model from the registry,
-- by alias (default "production") or version; the worker gets its file ("${models.churn.production}").
-- training_data(...) takes the same arguments and gives the dataset that version was trained on,
-- found through its lineage ("${training_data.churn.production}").
local function registry_ref(fn, ns)
    return function(name, ref)
        if type(name) ~= "string" or not name:match("^[a-z][a-z0-9_.-]*$") or #name > 63 then
            error(fn .. '(NAME[, ALIAS or VERSION]): NAME is a registry model name like "churn", not ' .. describe(name), 2)
        end
        if ref == nil then ref = "production" end
        if math.type(ref) == "integer" and ref > 0 then ref = tostring(ref)
        elseif type(ref) ~= "string" or not ref:match("^[a-z][a-z0-9_-]*$") or #ref > 63 then
            error(fn .. '("' .. name .. '", ...): the second argument is an alias like "production" or a version number, not '
                  .. describe(ref), 2)
        end
        return "${" .. ns .. "." .. name .. "." .. ref .. "}"
    end
end
local model = registry_ref("model", "models")
local training_data = registry_ref("training_data", "training_data")

local TRIGGER_FIELDS = { "cooldown", "dedup_key", "max_active_runs", "params", "subject", "threshold" }
local TRIGGER_SET = set_of(TRIGGER_FIELDS)

local TRIGGER_MT = { __metatable = false, __newindex = function()
    error("an on_signal rule is read-only: declare a new one with on_signal \"kind\" { ... }", 2)
end }

local function on_signal(kind)
    local line = host_line()
    return function(spec)
        local ctx = 'trigger on_signal "' .. tostring(kind) .. '"'
        -- subject "" in the plan: any subject ("*" in the script means the same)
        local tr = { line = line, subject = "", threshold = 0.0, cooldown_ms = 0,
                     dedup_key = "${signal.kind}:${signal.subject}", max_active_runs = 1, params = {} }
        if type(kind) ~= "string" or not sfind(kind, "^[a-z][a-z0-9_.-]*$") then
            err(line, "on_signal needs a signal kind like \"drift\" (lowercase letters, digits, \".\", \"-\", \"_\"), not %s",
                describe(kind))
        end
        tr.signal = type(kind) == "string" and kind or "?"
        -- the handle the script gets; the rule itself stays in TRIGGERS, out of its reach
        local h = setmetatable({}, TRIGGER_MT)
        TRIGGERS[h] = tr
        if type(spec) ~= "table" then err(line, "%s needs a body { ... }", ctx) return h end
        check_fields(line, ctx, spec, TRIGGER_FIELDS, TRIGGER_SET)
        if spec.subject ~= nil then tr.subject = want_string(line, ctx, "subject", spec.subject) or "" end
        if tr.subject == "*" then tr.subject = "" end
        if spec.threshold ~= nil then tr.threshold = want_number(line, ctx, "threshold", spec.threshold) or 0.0 end
        if spec.cooldown ~= nil then tr.cooldown_ms = want_duration(line, ctx, "cooldown", spec.cooldown) or 0 end
        if spec.dedup_key ~= nil then tr.dedup_key = want_string(line, ctx, "dedup_key", spec.dedup_key) or "" end
        if spec.max_active_runs ~= nil then
            tr.max_active_runs = want_int(line, ctx, "max_active_runs", spec.max_active_runs, 1, 1000) or 1
        end
        if spec.params ~= nil then tr.params = want_map(line, ctx, "params", spec.params, IDENT_RE, "parameter names") or {} end
        return h
    end
end

local PIPELINE_FIELDS = { "defaults", "description", "max_active_runs", "params", "schedule", "triggers" }
local PIPELINE_SET = set_of(PIPELINE_FIELDS)
local SCHEDULE_FIELDS = { "catchup", "cron", "timezone" }

local function want_params(line, ctx, v)
    local out = {}
    if want_table(line, ctx, "params", v) == nil then return out end
    local keys = sorted_keys(v)
    for i = 1, #keys do
        local k, p = keys[i], rawget(v, keys[i])
        if type(k) ~= "string" or not sfind(k, "^[a-z_][a-z0-9_]*$") then
            err(line, "%s: parameter names must be lowercase identifiers, not %s", ctx, describe(k))
        else
            local tp = type(p)
            if tp == "table" and PARAMS[p] then  -- param.number(0.1): what was checked, checked again
                local d = PARAMS[p]
                local pctx = ctx .. " params." .. k
                if not PARAM_TYPES[d.type] then err(line, "%s has an invalid type", pctx) p = nil
                else
                    p = { type = d.type, description = type(d.description) == "string"
                          and want_string(line, pctx, "the description", d.description) or "" }
                    if d.default ~= nil then
                        p.default = want_default(line, pctx, d.type, d.default)
                        if p.default == nil then p = nil end
                    end
                end
            elseif tp == "number" then p = { type = mtype(p) == "integer" and "int" or "number", default = p }
            elseif tp == "string" then p = { type = "string", default = want_string(line, ctx, "params." .. k, p) }
                if p.default == nil then p = nil end
            elseif tp == "boolean" then p = { type = "bool", default = p }
            else
                err(line, "%s: params.%s must be param.number(...), param.int(...), param.string(...), param.bool(...) or a plain default value, not %s",
                    ctx, k, describe(p))
                p = nil
            end
            if p then
                if p.type == "number" and p.default ~= nil then p.default = p.default + 0.0 end
                out[k] = { type = p.type, default = p.default, required = p.default == nil,
                           description = p.description or "" }
            end
        end
    end
    return out
end

local function want_schedule(line, ctx, v)
    if type(v) == "string" then v = { cron = v } end
    if type(v) ~= "table" then
        err(line, '%s: schedule must be a cron string like "0 3 * * *" or { cron = ..., timezone = ... }, not %s', ctx,
            describe(v))
        return nil
    end
    check_fields(line, ctx, v, SCHEDULE_FIELDS, set_of(SCHEDULE_FIELDS), "schedule.")
    local s = { timezone = "UTC", catchup = false }
    if want_string(line, ctx, "schedule.cron", v.cron) then
        local norm, msg = host_cron(v.cron)
        if norm then s.cron = norm
        else err(line, '%s: schedule "%s" is not a valid cron expression: %s', ctx, v.cron, msg) end
    end
    if v.timezone ~= nil and want_string(line, ctx, "schedule.timezone", v.timezone) then
        if #v.timezone > 64 or not sfind(v.timezone, "^[A-Za-z][A-Za-z0-9_+/-]*$") then
            err(line, '%s: schedule.timezone "%s" is not a time zone name like "UTC" or "Europe/Paris"', ctx, v.timezone)
        else
            s.timezone = v.timezone
        end
    end
    if v.catchup ~= nil then s.catchup = want_bool(line, ctx, "schedule.catchup", v.catchup) end
    return s.cron and s or nil
end

local function pipeline(name)
    local line = host_line()
    local p = { "pipeline", name, line, false }
    pending[#pending + 1] = p
    return function(spec)
        p[4] = true
        if pipe then
            err(line, 'a file declares one pipeline; "%s" was already declared at line %d', pipe.name, pipe.line)
            return
        end
        valid_name(line, "pipeline", name)
        local ctx = 'pipeline "' .. tostring(name) .. '"'
        pipe = { name = type(name) == "string" and name or "?", line = line, description = "", params = {},
                 triggers = {}, max_active_runs = 1, defaults = {} }
        if type(spec) ~= "table" then err(line, "%s needs a body { ... }", ctx) return end
        check_fields(line, ctx, spec, PIPELINE_FIELDS, PIPELINE_SET)
        if spec.description ~= nil then pipe.description = want_string(line, ctx, "description", spec.description) or "" end
        if spec.params ~= nil then pipe.params = want_params(line, ctx, spec.params) end
        if spec.schedule ~= nil then pipe.schedule = want_schedule(line, ctx, spec.schedule) end
        if spec.max_active_runs ~= nil then
            pipe.max_active_runs = want_int(line, ctx, "max_active_runs", spec.max_active_runs, 1, 1000) or 1
        end
        if spec.triggers ~= nil and want_table(line, ctx, "triggers", spec.triggers) then
            local trs = spec.triggers
            if TRIGGERS[trs] then trs = { trs } end
            for i = 1, rawlen(trs) do
                local tr = rawget(trs, i)
                if TRIGGERS[tr] then pipe.triggers[#pipe.triggers + 1] = TRIGGERS[tr]
                else err(line, '%s: triggers[%d] must be an on_signal "kind" { ... } rule, not %s', ctx, i, describe(tr)) end
            end
        end
        if spec.defaults ~= nil and want_table(line, ctx, "defaults", spec.defaults) then
            local d, dctx = spec.defaults, ctx .. " defaults"
            check_fields(line, ctx, d, DEFAULT_FIELDS, DEFAULT_SET, "defaults.")
            local out = pipe.defaults
            if d.retries ~= nil then out.retries = want_retries(line, dctx, d.retries) end
            if d.resources ~= nil then out.resources = want_resources(line, dctx, d.resources) end
            if d.timeout ~= nil then out.timeout_ms = want_duration(line, dctx, "timeout", d.timeout) end
            if d.priority ~= nil then out.priority = want_int(line, dctx, "priority", d.priority, -1000000, 1000000) end
            if d.trigger_rule ~= nil then out.trigger_rule = want_trigger_rule(line, dctx, d.trigger_rule) end
        end
    end
end

---------------------------------------------------------------------------------------------
-- finish(): the checks that need the whole file and are cheap here; then the declarations go to
-- dsl/link.c, which resolves names and "${...}" references, fills defaults and finds cycles.

local function finish()
    for i = 1, #pending do
        local p = pending[i]
        if not p[4] then
            err(p[3], '%s "%s" has no body: write %s "%s" { ... }', p[1], tostring(p[2]), p[1], tostring(p[2]))
        end
    end
    if not pipe then err(1, 'no pipeline declared: start the file with pipeline "name" { ... }') end
    local groups = {}
    for name, entry in next, byname do
        if type(entry) == "table" then groups[name] = entry.members end
    end
    local plan, trigger_lines = false, {}
    if pipe then
        -- a run started by the clock or a signal has no one to ask for a required parameter
        local required = {}
        for name, p in next, pipe.params do if p.required then required[#required + 1] = name end end
        for _, name in next, required do
            if pipe.schedule then
                err(pipe.line, 'pipeline "%s" has a schedule, but parameter "%s" has no default (scheduled runs pass no parameters)',
                    pipe.name, name)
            end
            for k = 1, #pipe.triggers do
                local tr = pipe.triggers[k]
                if tr.params[name] == nil then
                    err(tr.line, 'trigger on_signal "%s" must set parameter "%s", which has no default', tr.signal, name)
                end
            end
        end
        local triggers = {}
        for k = 1, #pipe.triggers do
            local tr = pipe.triggers[k]
            local line, ctx = tr.line, 'trigger on_signal "' .. tr.signal .. '"'
            for name, v in next, tr.params do
                local decl = pipe.params[name]
                if not decl then
                    err(line, '%s sets parameter "%s", which is not declared in pipeline params%s', ctx, name,
                        suggest(name, sorted_keys(pipe.params)))
                else
                    local ok = type(v) == "string" and sfind(v, "${", 1, true)
                        or (decl.type == "number" and type(v) == "number")
                        or (decl.type == "int" and mtype(v) == "integer")
                        or (decl.type == "bool" and type(v) == "boolean")
                        or (decl.type == "string" and type(v) == "string")
                    if not ok then
                        err(line, '%s: params.%s must be a %s (or a "${signal.FIELD}" placeholder), not %s', ctx, name,
                            decl.type, describe(v))
                    end
                end
            end
            trigger_lines[k] = line
            triggers[k] = { signal = tr.signal, subject = tr.subject, threshold = tr.threshold,
                            cooldown_ms = tr.cooldown_ms, dedup_key = tr.dedup_key,
                            max_active_runs = tr.max_active_runs, params = tr.params }
        end
        plan = { format = 1, name = pipe.name, description = pipe.description, params = pipe.params,
                 schedule = pipe.schedule, triggers = array(triggers), max_active_runs = pipe.max_active_runs }
    end
    return { pipeline = plan, decls = decls, lines = dline, after = dafter, partial = dpartial, groups = groups,
             defaults = pipe and pipe.defaults or {}, trigger_lines = trigger_lines }
end

---------------------------------------------------------------------------------------------
-- The sandbox environment: the DSL, and the safe parts of the standard library.

local env = {}
for _, k in next, { "assert", "error", "getmetatable", "ipairs", "next", "pcall", "rawequal", "rawget", "rawlen",
                    "rawset", "select", "tonumber", "tostring", "type", "xpcall", "_VERSION" } do
    env[k] = _G[k]
end
env.string, env.table, env.math, env.utf8, env.coroutine = string, table, math, utf8, coroutine
env.print = function() end  -- a pipeline has no console; print is accepted and ignored
env._G = env

-- Keys in sorted order, so that a plan never depends on the hash order of a table.
function env.pairs(t)
    local mt = getmetatable(t)
    if type(t) ~= "table" or (type(mt) == "table" and rawget(mt, "__pairs")) then return pairs(t) end
    local keys, i = sorted_keys(t), 0
    return function()
        while true do
            i = i + 1
            local k = keys[i]
            if k == nil then return nil end
            local v = rawget(t, k)
            if v ~= nil then return k, v end
        end
    end, t, nil
end

-- Text chunks only, and in the sandbox unless the script passes its own environment.
function env.load(...)
    local chunk, name, _, e = ...
    if select("#", ...) < 4 then e = env end
    return load(chunk, name, "t", e)
end

-- Finalizers would run at times that depend on the allocator, and after the script is done.
function env.setmetatable(t, mt)
    if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
        error("__gc metamethods are not available in a pipeline", 2)
    end
    local ok, r = pcall(setmetatable, t, mt)
    if not ok then error(r, 2) end
    return r
end

env.pipeline = pipeline
env.task, env.gate, env.approval = declarer("task"), declarer("gate"), declarer("approval")
env.foreach = foreach
env.param = param
env.params, env.run, env.signal = placeholders("params"), placeholders("run"), placeholders("signal")
env.on_signal = on_signal
env.model = model
env.training_data = training_data

local HOST = set_of({ "io", "os", "require", "package", "debug", "dofile", "loadfile", "collectgarbage",
                      "loadstring", "module", "setfenv", "getfenv", "warn" })
local GLOBALS = sorted_keys(env)
setmetatable(env, { __metatable = false, __index = function(_, k)
    if HOST[k] then
        error(sfmt("%s is not available in a pipeline: scripts run in a sandbox and cannot touch the host", k), 2)
    end
    error(sfmt('unknown global "%s"%s', tostring(k), suggest(k, GLOBALS)), 2)
end })

return { env = env, finish = finish, errors = E, array = ARRAY, sorted = SORTED }
