# A small value on flash, replaced atomically: written to NAME.new, then renamed over
# NAME, so a reset leaves either the old value or the new one, never half of each.
# Used for the sequence lease (seq.py), which is written once per block of records.

import os


class FileStore:
    def __init__(self, path):
        self.path = path

    def read(self):
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, data):
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
        os.rename(tmp, self.path)
