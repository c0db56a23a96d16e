// A compact msgpack reader and writer: the subset the companion's wire uses (nil, bool, ints,
// floats, str, bin, array, map). No UnityEngine and no NuGet package, so it compiles in Unity
// and with plain Mono/.NET alike. Decoding is defensive: every length is checked against the
// bytes that are really there, and nesting is bounded, so a bad frame throws MsgPackException
// instead of allocating or recursing without limit.
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Text;

namespace AICompanion.Bridge.Protocol
{
    /// <summary>The bytes are not valid msgpack (or use a feature this subset does not read).</summary>
    public class MsgPackException : Exception
    {
        public MsgPackException(string message) : base(message) { }
    }

    public static class MsgPack
    {
        /// <summary>Encode a value: null, bool, integers, float/double, string, byte[],
        /// IDictionary (keys become strings), or any other IEnumerable (an array).</summary>
        public static byte[] Pack(object value)
        {
            var writer = new MsgPackWriter();
            writer.Write(value);
            return writer.ToArray();
        }

        /// <summary>Decode exactly one value filling the whole buffer. Maps become
        /// Dictionary&lt;string, object&gt;, arrays List&lt;object&gt;, integers long (ulong above
        /// long.MaxValue), floats double, str string, bin byte[].</summary>
        public static object Unpack(byte[] data)
        {
            var reader = new MsgPackReader(data, 0, data.Length);
            object value = reader.Read();
            if (reader.Position != data.Length)
                throw new MsgPackException("trailing bytes after the value");
            return value;
        }
    }

    public sealed class MsgPackWriter
    {
        private readonly MemoryStream _out = new MemoryStream();
        private const int MaxDepth = 64;

        public byte[] ToArray() { return _out.ToArray(); }

        public void Write(object value) { Write(value, 0); }

        private void Write(object value, int depth)
        {
            if (depth > MaxDepth) throw new MsgPackException("value nested too deeply");
            if (value == null) { _out.WriteByte(0xc0); return; }
            if (value is bool) { _out.WriteByte((bool)value ? (byte)0xc3 : (byte)0xc2); return; }
            if (value is string) { WriteString((string)value); return; }
            if (value is byte[]) { WriteBinary((byte[])value); return; }
            if (value is double) { WriteDouble((double)value); return; }
            if (value is float) { WriteDouble((float)value); return; }
            if (value is ulong) { WriteUInt((ulong)value); return; }
            if (value is long || value is int || value is short || value is sbyte
                || value is uint || value is ushort || value is byte)
            {
                WriteInt(Convert.ToInt64(value, CultureInfo.InvariantCulture));
                return;
            }
            var map = value as IDictionary;
            if (map != null)
            {
                WriteHeader(map.Count, 0x80, 0xde, 0xdf, 16);
                foreach (DictionaryEntry entry in map)
                {
                    WriteString(Convert.ToString(entry.Key, CultureInfo.InvariantCulture));
                    Write(entry.Value, depth + 1);
                }
                return;
            }
            var list = value as IEnumerable;
            if (list != null)
            {
                var items = new List<object>();
                foreach (object item in list) items.Add(item);
                WriteHeader(items.Count, 0x90, 0xdc, 0xdd, 16);
                foreach (object item in items) Write(item, depth + 1);
                return;
            }
            throw new MsgPackException("cannot encode a " + value.GetType().Name);
        }

        public void WriteInt(long v)
        {
            if (v >= 0) { WriteUInt((ulong)v); return; }
            if (v >= -32) { _out.WriteByte((byte)(sbyte)v); return; }
            if (v >= sbyte.MinValue) { _out.WriteByte(0xd0); _out.WriteByte((byte)(sbyte)v); return; }
            if (v >= short.MinValue) { _out.WriteByte(0xd1); BigEndian((ulong)(ushort)(short)v, 2); return; }
            if (v >= int.MinValue) { _out.WriteByte(0xd2); BigEndian((ulong)(uint)(int)v, 4); return; }
            _out.WriteByte(0xd3);
            BigEndian((ulong)v, 8);
        }

        public void WriteUInt(ulong v)
        {
            if (v <= 0x7f) { _out.WriteByte((byte)v); return; }
            if (v <= byte.MaxValue) { _out.WriteByte(0xcc); _out.WriteByte((byte)v); return; }
            if (v <= ushort.MaxValue) { _out.WriteByte(0xcd); BigEndian(v, 2); return; }
            if (v <= uint.MaxValue) { _out.WriteByte(0xce); BigEndian(v, 4); return; }
            _out.WriteByte(0xcf);
            BigEndian(v, 8);
        }

        public void WriteDouble(double v)
        {
            _out.WriteByte(0xcb);
            BigEndian((ulong)BitConverter.DoubleToInt64Bits(v), 8);
        }

        public void WriteString(string s)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(s);
            if (bytes.Length <= 31) _out.WriteByte((byte)(0xa0 | bytes.Length));
            else if (bytes.Length <= byte.MaxValue) { _out.WriteByte(0xd9); _out.WriteByte((byte)bytes.Length); }
            else if (bytes.Length <= ushort.MaxValue) { _out.WriteByte(0xda); BigEndian((ulong)bytes.Length, 2); }
            else { _out.WriteByte(0xdb); BigEndian((ulong)bytes.Length, 4); }
            _out.Write(bytes, 0, bytes.Length);
        }

        public void WriteBinary(byte[] b)
        {
            if (b.Length <= byte.MaxValue) { _out.WriteByte(0xc4); _out.WriteByte((byte)b.Length); }
            else if (b.Length <= ushort.MaxValue) { _out.WriteByte(0xc5); BigEndian((ulong)b.Length, 2); }
            else { _out.WriteByte(0xc6); BigEndian((ulong)b.Length, 4); }
            _out.Write(b, 0, b.Length);
        }

        private void WriteHeader(int count, int fix, byte h16, byte h32, int fixLimit)
        {
            if (count < fixLimit) _out.WriteByte((byte)(fix | count));
            else if (count <= ushort.MaxValue) { _out.WriteByte(h16); BigEndian((ulong)count, 2); }
            else { _out.WriteByte(h32); BigEndian((ulong)count, 4); }
        }

        private void BigEndian(ulong v, int bytes)
        {
            for (int shift = (bytes - 1) * 8; shift >= 0; shift -= 8)
                _out.WriteByte((byte)(v >> shift));
        }
    }

    public sealed class MsgPackReader
    {
        private readonly byte[] _buf;
        private readonly int _end;
        private int _pos;
        private const int MaxDepth = 64;

        public MsgPackReader(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length)
                throw new ArgumentOutOfRangeException("count");
            _buf = buffer;
            _pos = offset;
            _end = offset + count;
        }

        public int Position { get { return _pos; } }

        public object Read() { return Read(0); }

        private object Read(int depth)
        {
            if (depth > MaxDepth) throw new MsgPackException("value nested too deeply");
            byte b = Byte();
            if (b <= 0x7f) return (long)b;
            if (b >= 0xe0) return (long)(sbyte)b;
            if ((b & 0xf0) == 0x80) return ReadMap(b & 0x0f, depth);
            if ((b & 0xf0) == 0x90) return ReadArray(b & 0x0f, depth);
            if ((b & 0xe0) == 0xa0) return Str(b & 0x1f);
            switch (b)
            {
                case 0xc0: return null;
                case 0xc2: return false;
                case 0xc3: return true;
                case 0xc4: return Bytes((int)UInt(1));
                case 0xc5: return Bytes((int)UInt(2));
                case 0xc6: return Bytes(Length(UInt(4)));
                case 0xca: return (double)BitConverter.ToSingle(Swap(4), 0);
                case 0xcb: return BitConverter.Int64BitsToDouble((long)UInt(8));
                case 0xcc: return (long)UInt(1);
                case 0xcd: return (long)UInt(2);
                case 0xce: return (long)UInt(4);
                case 0xcf:
                    {
                        ulong v = UInt(8);
                        if (v <= long.MaxValue) return (long)v;
                        return v;
                    }
                case 0xd0: return (long)(sbyte)UInt(1);
                case 0xd1: return (long)(short)UInt(2);
                case 0xd2: return (long)(int)UInt(4);
                case 0xd3: return (long)UInt(8);
                case 0xd9: return Str((int)UInt(1));
                case 0xda: return Str((int)UInt(2));
                case 0xdb: return Str(Length(UInt(4)));
                case 0xdc: return ReadArray((int)UInt(2), depth);
                case 0xdd: return ReadArray(Length(UInt(4)), depth);
                case 0xde: return ReadMap((int)UInt(2), depth);
                case 0xdf: return ReadMap(Length(UInt(4)), depth);
                default:
                    throw new MsgPackException(string.Format(CultureInfo.InvariantCulture,
                        "unsupported msgpack byte 0x{0:x2} at {1}", b, _pos - 1));
            }
        }

        private List<object> ReadArray(int count, int depth)
        {
            Need(count);  // every element takes at least one byte: no huge allocation for a lie
            var list = new List<object>(count);
            for (int i = 0; i < count; i++) list.Add(Read(depth + 1));
            return list;
        }

        private Dictionary<string, object> ReadMap(int count, int depth)
        {
            Need(2L * count);
            var map = new Dictionary<string, object>(count);
            for (int i = 0; i < count; i++)
            {
                object key = Read(depth + 1);
                string name = key as string
                    ?? Convert.ToString(key, CultureInfo.InvariantCulture) ?? "";
                map[name] = Read(depth + 1);
            }
            return map;
        }

        private byte Byte()
        {
            Need(1);
            return _buf[_pos++];
        }

        private ulong UInt(int bytes)
        {
            Need(bytes);
            ulong v = 0;
            for (int i = 0; i < bytes; i++) v = (v << 8) | _buf[_pos++];
            return v;
        }

        private byte[] Swap(int bytes)
        {
            Need(bytes);
            var b = new byte[bytes];
            Array.Copy(_buf, _pos, b, 0, bytes);
            _pos += bytes;
            if (BitConverter.IsLittleEndian) Array.Reverse(b);
            return b;
        }

        private byte[] Bytes(int count)
        {
            Need(count);
            var b = new byte[count];
            Array.Copy(_buf, _pos, b, 0, count);
            _pos += count;
            return b;
        }

        private string Str(int count)
        {
            Need(count);
            string s = Encoding.UTF8.GetString(_buf, _pos, count);
            _pos += count;
            return s;
        }

        private static int Length(ulong v)
        {
            if (v > int.MaxValue) throw new MsgPackException("length too large");
            return (int)v;
        }

        private void Need(long count)
        {
            if (count < 0 || count > _end - _pos)
                throw new MsgPackException("truncated msgpack value");
        }
    }
}
