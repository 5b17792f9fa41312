pipeline "spin" {}

-- the generator and its consumer share one line, so the budget runs out on it whichever side is running
local gen = coroutine.wrap(function() while true do coroutine.yield(1) end end); while true do gen() end
