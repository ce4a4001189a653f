# Scratch directories for tests that run under CPython and MicroPython alike.
import os


def fresh_dir(tag):
    path = "/tmp/metro_%s_%s" % (tag, "".join("%02x" % b for b in os.urandom(4)))
    os.mkdir(path)
    return path


def remove_tree(path):
    for name in os.listdir(path):
        full = path + "/" + name
        try:
            os.remove(full)
        except OSError:
            remove_tree(full)
    os.rmdir(path)
