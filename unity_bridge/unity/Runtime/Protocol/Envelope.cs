// The envelope and the TCP framing of the companion's wire (see docs/PROTOCOL.md): a 4-byte
// big-endian length, then one msgpack map {type, id?, reply_to?, ts, data}. No UnityEngine.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;

namespace AICompanion.Bridge.Protocol
{
    /// <summary>A frame or envelope that breaks the protocol.</summary>
    public class ProtocolException : Exception
    {
        public ProtocolException(string message) : base(message) { }
    }

    /// <summary>One message: the same envelope as the Python side's protocol/codec.py.</summary>
    public sealed class Envelope
    {
        public string Type;
        public long? Id;
        public long? ReplyTo;
        public double Ts;
        public Dictionary<string, object> Data;

        public Envelope(string type, Dictionary<string, object> data = null, long? id = null,
                        long? replyTo = null)
        {
            Type = type;
            Data = data ?? new Dictionary<string, object>();
            Id = id;
            ReplyTo = replyTo;
        }

        public byte[] Encode()
        {
            var map = new Dictionary<string, object>
            {
                { "type", Type },
                { "ts", Ts > 0 ? Ts : (DateTime.UtcNow - Epoch).TotalSeconds },
                { "data", Data },
            };
            if (Id.HasValue) map["id"] = Id.Value;
            if (ReplyTo.HasValue) map["reply_to"] = ReplyTo.Value;
            return MsgPack.Pack(map);
        }

        public static Envelope Decode(byte[] payload)
        {
            object value;
            try
            {
                value = MsgPack.Unpack(payload);
            }
            catch (MsgPackException e)
            {
                throw new ProtocolException("not a msgpack frame: " + e.Message);
            }
            var map = value as Dictionary<string, object>;
            if (map == null) throw new ProtocolException("a frame must be a msgpack map");
            object type;
            if (!map.TryGetValue("type", out type) || !(type is string))
                throw new ProtocolException("missing string field 'type'");
            var env = new Envelope((string)type, map.ContainsKey("data")
                ? map["data"] as Dictionary<string, object> : null);
            env.Id = OptionalLong(map, "id");
            env.ReplyTo = OptionalLong(map, "reply_to");
            object ts;
            if (map.TryGetValue("ts", out ts) && IsNumber(ts))
                env.Ts = Convert.ToDouble(ts, CultureInfo.InvariantCulture);
            return env;
        }

        // -- typed access to data fields, with defaults for missing or mistyped ones --------
        public string GetString(string key, string fallback = null)
        {
            object v;
            return Data.TryGetValue(key, out v) && v is string ? (string)v : fallback;
        }

        public double GetDouble(string key, double fallback = 0)
        {
            object v;
            return Data.TryGetValue(key, out v) && IsNumber(v)
                ? Convert.ToDouble(v, CultureInfo.InvariantCulture) : fallback;
        }

        public long GetLong(string key, long fallback = 0)
        {
            object v;
            return Data.TryGetValue(key, out v) && v is long ? (long)v : fallback;
        }

        public bool GetBool(string key, bool fallback = false)
        {
            object v;
            return Data.TryGetValue(key, out v) && v is bool ? (bool)v : fallback;
        }

        public Dictionary<string, object> GetMap(string key)
        {
            object v;
            return Data.TryGetValue(key, out v) ? v as Dictionary<string, object> : null;
        }

        public List<object> GetList(string key)
        {
            object v;
            return Data.TryGetValue(key, out v) ? v as List<object> : null;
        }

        public override string ToString()
        {
            return Type + (Id.HasValue ? " id=" + Id : "") + (ReplyTo.HasValue ? " reply_to=" + ReplyTo : "");
        }

        public static bool IsNumber(object v)
        {
            return v is long || v is ulong || v is double || v is int || v is float;
        }

        private static long? OptionalLong(Dictionary<string, object> map, string key)
        {
            object v;
            if (!map.TryGetValue(key, out v) || v == null) return null;
            if (v is long) return (long)v;
            throw new ProtocolException("'" + key + "' must be an integer");
        }

        private static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);
    }

    /// <summary>Length-prefixed frames on a stream.</summary>
    public static class Framing
    {
        public const int HeaderSize = 4;

        public static byte[] Frame(byte[] payload)
        {
            var framed = new byte[HeaderSize + payload.Length];
            uint n = (uint)payload.Length;
            framed[0] = (byte)(n >> 24);
            framed[1] = (byte)(n >> 16);
            framed[2] = (byte)(n >> 8);
            framed[3] = (byte)n;
            Buffer.BlockCopy(payload, 0, framed, HeaderSize, payload.Length);
            return framed;
        }

        /// <summary>The next payload; null at a clean end of stream. Throws ProtocolException
        /// for a length over maxSize (checked before allocating) or a stream cut mid-frame.</summary>
        public static byte[] ReadFrame(Stream stream, int maxSize)
        {
            var header = new byte[HeaderSize];
            int got = ReadFully(stream, header);
            if (got == 0) return null;
            if (got < HeaderSize) throw new ProtocolException("stream ended inside a frame header");
            uint n = ((uint)header[0] << 24) | ((uint)header[1] << 16) | ((uint)header[2] << 8) | header[3];
            if (n > (uint)maxSize)
                throw new ProtocolException("frame length " + n + " exceeds the limit of " + maxSize);
            var payload = new byte[n];
            if (ReadFully(stream, payload) < payload.Length)
                throw new ProtocolException("stream ended inside a frame");
            return payload;
        }

        private static int ReadFully(Stream stream, byte[] buffer)
        {
            int total = 0;
            while (total < buffer.Length)
            {
                int n = stream.Read(buffer, total, buffer.Length - total);
                if (n <= 0) break;
                total += n;
            }
            return total;
        }
    }
}
