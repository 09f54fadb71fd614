-- Remove connections (clean leave or disconnect). ARGV[5], ...: connection ids.
sweep()
for i = 5, #ARGV do
  remove(ARGV[i])
end
return {}
