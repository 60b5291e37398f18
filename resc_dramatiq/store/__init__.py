"""Redis side: key names, Lua scripts, the commit codec, housekeeping."""
