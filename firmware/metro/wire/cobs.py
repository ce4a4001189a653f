# Consistent Overhead Byte Stuffing (Cheshire & Baker, IEEE/ACM ToN 1999): the encoded
# form contains no 0x00, so 0x00 can delimit frames on a byte stream such as a UART.


def encode(data):
    out = bytearray()
    code_pos = 0
    out.append(0)
    code = 1
    for b in data:
        if b == 0:
            out[code_pos] = code
            code_pos = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_pos] = code
                code_pos = len(out)
                out.append(0)
                code = 1
    out[code_pos] = code
    return bytes(out)


def decode(data):
    """Undo encode(); raise ValueError if data is not a valid COBS block."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside COBS block")
        end = i + code
        if end > n:
            raise ValueError("COBS code runs past the end")
        for j in range(i + 1, end):
            if data[j] == 0:
                raise ValueError("zero byte inside COBS block")
        out.extend(data[i + 1:end])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)
