-- Remove connections (clean leave or disconnect). ARGV[7], ...: connection ids.
sweep()
for i = 7, #ARGV do
  remove(ARGV[i])
end
publish_count()
return {}
