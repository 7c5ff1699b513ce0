"""
Sound: the devices behind the playback and record channels (sources of
sound for clients, sinks for their microphones), the Opus codec, and the
built-in sources and sinks (tone, file, pulse).
"""
