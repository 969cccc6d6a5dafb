"""Development tools: the Microsoft endpoint emulator, Azurite launcher, demo and checks."""
