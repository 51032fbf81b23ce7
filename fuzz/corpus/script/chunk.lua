local t = {}
for i = 1, 10 do t[#t + 1] = string.format("%d", i) end
return { v = table.concat(t, ","), ok = input.x ~= nil }