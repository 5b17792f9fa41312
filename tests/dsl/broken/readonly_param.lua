-- a declaration cannot change after it was checked
local p = param.string("s")
p.default = { "not", "a", "string" }
pipeline "ro" { params = { s = p } }
