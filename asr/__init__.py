"""Audio in and out: AudioSocket server, speech recognisers, TTS, the bot's dialogue."""
