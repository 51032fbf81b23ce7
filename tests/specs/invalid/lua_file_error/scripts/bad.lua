local t = {}
t.x = 1
return t..
