"""The protocol shared by dynamod, its clients and its children: framing and messages."""
