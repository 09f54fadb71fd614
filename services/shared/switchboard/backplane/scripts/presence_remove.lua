-- Remove connections (clean leave or disconnect). ARGV[6], ...: connection ids.
sweep()
for i = 6, #ARGV do
  remove(ARGV[i])
end
publish_count()
return {}
