-- Redis Functions, one library each; written by `mcp-cluster redis-functions app > redis/functions.lua`.
#!lua name=mcp_12e85d339bffed202a89
redis.register_function{function_name='mcp_12e85d339bffed202a89', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], 1, now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], 0, 0)) do
  if redis.call('EXISTS', ARGV[3] .. id) == 0 then redis.call('ZREM', KEYS[1], id) end
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return nothing_written(false) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return true
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_1a44df7f2ebd4b9ebf12
redis.register_function{function_name='mcp_1a44df7f2ebd4b9ebf12', flags={'no-writes'}, callback=function(KEYS, ARGV)
local first = redis.call('GET', KEYS[1])
if first then return {1, cjson.decode(first)} end
return {0}
end}

#!lua name=mcp_1d31b5937239c0ccd3a1
redis.register_function{function_name='mcp_1d31b5937239c0ccd3a1', flags={}, callback=function(KEYS, ARGV)
local now = redis.call('TIME')
local ring = {}
local current = redis.call('GET', KEYS[1])
if current then ring = cjson.decode(current) end
table.insert(ring, 1, {key = ARGV[1], seals_from = tonumber(now[1]) + tonumber(ARGV[2])})
while #ring > tonumber(ARGV[3]) do table.remove(ring) end
local encoded = cjson.encode(ring)
redis.call('SET', KEYS[1], encoded)
return encoded
end}

#!lua name=mcp_23083c2266a014aa72f7
redis.register_function{function_name='mcp_23083c2266a014aa72f7', flags={}, callback=function(KEYS, ARGV)
local function forget(records, ages, name)
  local raw = redis.call('HGET', records, name)
  local size = 0
  if raw then
    size = cjson.decode(raw).b or 0
    if size > 0 then redis.call('HINCRBY', records, '#bytes', -size) end
    redis.call('HDEL', records, name)
  end
  redis.call('ZREM', ages, name)
  return size
end
local function uncount(member, size)
  if redis.call('ZREM', KEYS[3], member) == 1 and size > 0 then redis.call('DECRBY', KEYS[4], size) end
end
local function drop(name)
  local size = forget(KEYS[1], KEYS[2], name)
  uncount(size .. ' ' .. ARGV[#ARGV] .. ' ' .. name, size)
end
local function drop_clients(member)
  local size, session, name = string.match(member, '^(%d+) (%S+) (.+)$')
  forget('mcp:requests:' .. session, 'mcp:requests-age:' .. session, name)
  uncount(member, tonumber(size))
end
local function keep_for(horizon)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], horizon) end
end

local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
if record.s == 'done' then return 0 end
if ARGV[4] == '' then
  if record.o ~= ARGV[2] or tonumber(record.g) ~= tonumber(ARGV[3]) then return 0 end
  record.s = 'retry'
else
  record.s = 'done'
  local size = string.len(ARGV[4])
  local member = '0 ' .. ARGV[9] .. ' ' .. ARGV[1]
  local began = redis.call('ZSCORE', KEYS[3], member)
  local client_bytes = tonumber(redis.call('GET', KEYS[4]) or '0')
  if size <= tonumber(ARGV[5]) and began and client_bytes + size <= tonumber(ARGV[7]) then
    local kept = tonumber(redis.call('HGET', KEYS[1], '#bytes') or '0')
    for _, older in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      if kept + size <= tonumber(ARGV[6]) then break end
      if older ~= ARGV[1] then
        drop(older)
        kept = tonumber(redis.call('HGET', KEYS[1], '#bytes') or '0')
      end
    end
    record.a, record.b = ARGV[4], size
    redis.call('HINCRBY', KEYS[1], '#bytes', size)
    redis.call('ZREM', KEYS[3], member)
    redis.call('ZADD', KEYS[3], began, size .. ' ' .. ARGV[9] .. ' ' .. ARGV[1])
    redis.call('INCRBY', KEYS[4], size)
  end
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
keep_for(tonumber(ARGV[8]))
return 1
end}

#!lua name=mcp_27fd24e54f0f86445904
redis.register_function{function_name='mcp_27fd24e54f0f86445904', flags={}, callback=function(KEYS, ARGV)
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
return 1
end}

#!lua name=mcp_37de86765043505d7499
redis.register_function{function_name='mcp_37de86765043505d7499', flags={}, callback=function(KEYS, ARGV)
local function heard_from_now(old, first_name)
  local heard = {}
  for i = 2, #KEYS do
    local name = ARGV[first_name + i - 2]
    if old[name] then
      heard[name] = old[name]
    else
      local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
      heard[name] = last[1] and last[1][1] or '0-0'
    end
  end
  return heard
end

if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local old = cjson.decode(redis.call('HGET', KEYS[1], 'heard') or '{}')
redis.call('HSET', KEYS[1], 'heard', cjson.encode(heard_from_now(old, 3)))
return redis.call('HSET', KEYS[1], 'subs', ARGV[2])
end}

#!lua name=mcp_3a2ea26c5b089e18c95e
redis.register_function{function_name='mcp_3a2ea26c5b089e18c95e', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local logged = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[2], string.sub(ARGV[1], 1, -2) .. ',"log":"' .. logged .. '"}')
return logged
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_3d724821b76d7deaad6d
redis.register_function{function_name='mcp_3d724821b76d7deaad6d', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written(nil) end
local value = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
local expiry = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[2], 'XX', expiry, KEYS[1])
if redis.call('ZADD', KEYS[3], 'XX', 'CH', expiry, KEYS[1]) == 1 then redis.call('EXPIRE', KEYS[3], ARGV[1]) end
return value
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_46ebfde9bb18b3c88de9
redis.register_function{function_name='mcp_46ebfde9bb18b3c88de9', flags={'allow-oom'}, callback=function(KEYS, ARGV)
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then return redis.call('DEL', KEYS[1], KEYS[2]) end
return 0
end}

#!lua name=mcp_4a1b515cef36813d0230
redis.register_function{function_name='mcp_4a1b515cef36813d0230', flags={}, callback=function(KEYS, ARGV)
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return redis.call('GET', KEYS[1])
end}

#!lua name=mcp_68990b3a29e556e33c2f
redis.register_function{function_name='mcp_68990b3a29e556e33c2f', flags={}, callback=function(KEYS, ARGV)
local function heard_from_now(old, first_name)
  local heard = {}
  for i = 2, #KEYS do
    local name = ARGV[first_name + i - 2]
    if old[name] then
      heard[name] = old[name]
    else
      local last = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', 1)
      heard[name] = last[1] and last[1][1] or '0-0'
    end
  end
  return heard
end

local heard = cjson.encode(heard_from_now({}, 6))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'params', ARGV[2], 'pv', ARGV[3], 'gen', 1, 'principal', ARGV[5])
redis.call('HSET', KEYS[1], 'heard', heard)
return redis.call('PEXPIRE', KEYS[1], ARGV[4])
end}

#!lua name=mcp_6b4416ce4238dc2b5a67
redis.register_function{function_name='mcp_6b4416ce4238dc2b5a67', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local function full(field, size)
  local count, bytes = 0, size
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, 2) == 's:' and name ~= field then
      count = count + 1
      bytes = bytes + redis.call('HSTRLEN', KEYS[1], name)
    end
  end
  return count >= 64 or bytes > 65536
end

local function moved()
  return redis.call('HGET', KEYS[1], 'owner') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'gen') ~= ARGV[4]
end

if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written(-1) end
if moved() then return nothing_written(-4) end
if full(ARGV[1], string.len(ARGV[2])) then return nothing_written(-2) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_7871f414f88b178c567e
redis.register_function{function_name='mcp_7871f414f88b178c567e', flags={'allow-oom'}, callback=function(KEYS, ARGV)
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[2] then redis.call('ZADD', KEYS[1], 0, ARGV[2]) redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
end}

#!lua name=mcp_970cb1485adda67afaf0
redis.register_function{function_name='mcp_970cb1485adda67afaf0', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local function full(field, size)
  local count, bytes = 0, size
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, 2) == 's:' and name ~= field then
      count = count + 1
      bytes = bytes + redis.call('HSTRLEN', KEYS[1], name)
    end
  end
  return count >= 64 or bytes > 65536
end

local function moved()
  return redis.call('HGET', KEYS[1], 'owner') ~= ARGV[3] or redis.call('HGET', KEYS[1], 'gen') ~= ARGV[4]
end

if redis.call('EXISTS', KEYS[1]) == 0 then return nothing_written({-1}) end
if moved() then return nothing_written({-4}) end
local current = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if not string.match(current, '^-?%d+$') or string.len(current) > 18 then return nothing_written({-3}) end
local value = tostring(tonumber(current) + tonumber(ARGV[2]))
if full(ARGV[1], string.len(value)) then return nothing_written({-2}) end
redis.call('HSET', KEYS[1], ARGV[1], value)
return {1, value}
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_a0a2f404759435902ef5
redis.register_function{function_name='mcp_a0a2f404759435902ef5', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
for i = 3, #ARGV - 2, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[i], 'u', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return (#ARGV - 4) / 2
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_a9849bfa3426a55c8f80
redis.register_function{function_name='mcp_a9849bfa3426a55c8f80', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local event_id
if ARGV[2] == '' then
  event_id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'm', ARGV[1])
else
  event_id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '*', 'm', ARGV[1], 'u', ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return event_id
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_a9e3ab1a33e5f3a4dea9
redis.register_function{function_name='mcp_a9e3ab1a33e5f3a4dea9', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return nothing_written(-1) end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return nothing_written(0) end
redis.call('SET', KEYS[1], 0, 'EX', ARGV[1], 'NX')
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), KEYS[1])
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[1]), KEYS[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
return 1
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_cb1133eada0ad61effd7
redis.register_function{function_name='mcp_cb1133eada0ad61effd7', flags={'allow-oom'}, callback=function(KEYS, ARGV)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if owner then return 0 end
return -1
end}

#!lua name=mcp_dffc772a2ac6182052b1
redis.register_function{function_name='mcp_dffc772a2ac6182052b1', flags={}, callback=function(KEYS, ARGV)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner == ARGV[2] then return redis.call('HMGET', KEYS[1], 'params', 'pv', 'subs', 'gen', 'principal', 'heard') end
if owner ~= ARGV[1] or redis.call('EXISTS', ARGV[4] .. owner) == 1 then return nil end
redis.call('HSET', KEYS[1], 'owner', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HMGET', KEYS[1], 'params', 'pv', 'subs', 'gen', 'principal', 'heard')
end}

#!lua name=mcp_e3f67ac50269551f6541
redis.register_function{function_name='mcp_e3f67ac50269551f6541', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
if redis.call('SET', KEYS[1], 1, 'NX', 'PX', ARGV[1]) then return 1 end
return nothing_written(0)
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_e4e44c7b4aa1a683951f
redis.register_function{function_name='mcp_e4e44c7b4aa1a683951f', flags={}, callback=function(KEYS, ARGV)
local function forget(records, ages, name)
  local raw = redis.call('HGET', records, name)
  local size = 0
  if raw then
    size = cjson.decode(raw).b or 0
    if size > 0 then redis.call('HINCRBY', records, '#bytes', -size) end
    redis.call('HDEL', records, name)
  end
  redis.call('ZREM', ages, name)
  return size
end
local function uncount(member, size)
  if redis.call('ZREM', KEYS[3], member) == 1 and size > 0 then redis.call('DECRBY', KEYS[4], size) end
end
local function drop(name)
  local size = forget(KEYS[1], KEYS[2], name)
  uncount(size .. ' ' .. ARGV[#ARGV] .. ' ' .. name, size)
end
local function drop_clients(member)
  local size, session, name = string.match(member, '^(%d+) (%S+) (.+)$')
  forget('mcp:requests:' .. session, 'mcp:requests-age:' .. session, name)
  uncount(member, tonumber(size))
end
local function keep_for(horizon)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], horizon) end
end

local clock = redis.call('TIME')
local now, horizon = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000), tonumber(ARGV[5])
-- the client's records by the microsecond: of several begun in one millisecond, the oldest goes first
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - horizon, 'LIMIT', 0, 16)) do drop(old) end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_us - horizon * 1000, 'LIMIT', 0, 16)) do
  drop_clients(old)
end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local record = cjson.decode(raw)
  if record.d ~= ARGV[2] then return {'conflict'} end
  if record.s == 'done' then return {'done', record.a or false} end
  if tonumber(record.g) > tonumber(ARGV[4]) then return {'stale'} end
  record.s, record.o, record.g = 'running', ARGV[3], tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
  return {'run'}
end
while redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) do drop(redis.call('ZRANGE', KEYS[2], 0, 0)[1]) end
while redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) do drop_clients(redis.call('ZRANGE', KEYS[3], 0, 0)[1]) end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode({d = ARGV[2], s = 'running', o = ARGV[3], g = tonumber(ARGV[4])}))
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('ZADD', KEYS[3], now_us, '0 ' .. ARGV[8] .. ' ' .. ARGV[1])
keep_for(horizon)
return {'run'}
end}

#!lua name=mcp_e56775d5a09693e999d7
redis.register_function{function_name='mcp_e56775d5a09693e999d7', flags={'no-writes'}, callback=function(KEYS, ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
return {1, redis.call('HGET', KEYS[1], ARGV[1])}
end}

#!lua name=mcp_e903b9bdc806dcb6091b
redis.register_function{function_name='mcp_e903b9bdc806dcb6091b', flags={}, callback=function(KEYS, ARGV)
local call_key, kept_ms = KEYS[#KEYS], tonumber(ARGV[#ARGV])
local client_calls, share = KEYS[#KEYS - 1], tonumber(ARGV[#ARGV - 1])
local first = redis.call('GET', call_key)
if first then return cjson.decode(first) end
local written = true
local function nothing_written(answer) written = false return answer end
local answer = (function() 
local now = tonumber(redis.call('TIME')[1])
local expiry = now + tonumber(ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4]) then return nothing_written(-1) end
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return nothing_written(0) end
  redis.call('ZADD', KEYS[3], expiry, KEYS[1])
else
  redis.call('ZADD', KEYS[3], 'XX', expiry, KEYS[1])
end
redis.call('EXPIRE', KEYS[3], ARGV[2])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], expiry, KEYS[1])
return version
 end)()
if answer == nil then answer = false end
if written then
  redis.call('SET', call_key, cjson.encode(answer), 'PX', kept_ms)
  if share > 0 then
    local clock = redis.call('TIME')  -- by the microsecond: of several made in one millisecond, the oldest goes
    local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
    redis.call('ZREMRANGEBYSCORE', client_calls, '-inf', now_us - kept_ms * 1000)
    redis.call('ZADD', client_calls, now_us, call_key)
    while redis.call('ZCARD', client_calls) > share do
      local oldest = redis.call('ZRANGE', client_calls, 0, 0)[1]
      redis.call('DEL', oldest)
      redis.call('ZREM', client_calls, oldest)
    end
    redis.call('PEXPIRE', client_calls, kept_ms)
  end
end
return answer
end}

#!lua name=mcp_fb6cc7bb7102673d9533
redis.register_function{function_name='mcp_fb6cc7bb7102673d9533', flags={'no-writes'}, callback=function(KEYS, ARGV)
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return nil end
return {owner, redis.call('GET', ARGV[1] .. owner) or '', redis.call('HGET', KEYS[1], 'principal') or ''}
end}
