# Instrument drivers: thin, handed their pins/UART by the board's main.py, never
# creating a bus themselves and importing nothing from machine at import time.
