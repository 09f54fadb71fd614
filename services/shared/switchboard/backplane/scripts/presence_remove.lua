-- Remove connections (clean leave or disconnect). ARGV[8], ...: connection ids.
sweep()
for i = 8, #ARGV do
  remove(ARGV[i])
end
publish_count()
return {}
