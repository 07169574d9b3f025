"""Built-in real-sound data: source recordings found offline, mixed into strongly labelled soundscapes."""
