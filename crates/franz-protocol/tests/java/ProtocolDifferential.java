// Differential check of franz's codec against Kafka's own generated message
// classes (org.apache.kafka.common.message.*Data).
//
// Reads lines "<MessageName> <version> <hex>" on stdin. For each, Kafka's
// class decodes the bytes (they must be consumed exactly) and re-encodes
// them. Prints "OK <hex>" with Kafka's encoding, or "ERR <reason>".
// The Rust test compares Kafka's bytes with franz's, both ways.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.reflect.Constructor;
import java.lang.reflect.InvocationTargetException;
import java.nio.ByteBuffer;
import java.util.HexFormat;

import org.apache.kafka.common.protocol.ByteBufferAccessor;
import org.apache.kafka.common.protocol.Message;
import org.apache.kafka.common.protocol.ObjectSerializationCache;
import org.apache.kafka.common.protocol.Readable;

public class ProtocolDifferential {
    public static void main(String[] args) throws Exception {
        HexFormat hex = HexFormat.of();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        StringBuilder out = new StringBuilder();
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isBlank()) continue;
            String[] parts = line.split(" ", -1);
            try {
                short version = Short.parseShort(parts[1]);
                byte[] bytes = parts.length > 2 ? hex.parseHex(parts[2]) : new byte[0];
                Class<?> cls = Class.forName("org.apache.kafka.common.message." + parts[0] + "Data");
                Constructor<?> ctor = cls.getConstructor(Readable.class, short.class);
                ByteBuffer input = ByteBuffer.wrap(bytes);
                Message msg = (Message) ctor.newInstance(new ByteBufferAccessor(input), version);
                if (input.remaining() != 0) {
                    out.append("ERR ").append(input.remaining()).append(" bytes left unread\n");
                    continue;
                }
                ObjectSerializationCache cache = new ObjectSerializationCache();
                int size = msg.size(cache, version);
                ByteBuffer buf = ByteBuffer.allocate(size);
                msg.write(new ByteBufferAccessor(buf), cache, version);
                out.append("OK ").append(hex.formatHex(buf.array())).append('\n');
            } catch (InvocationTargetException e) {
                out.append("ERR ").append(String.valueOf(e.getCause()).replace('\n', ' ')).append('\n');
            } catch (Exception e) {
                out.append("ERR ").append(String.valueOf(e).replace('\n', ' ')).append('\n');
            }
        }
        System.out.print(out);
    }
}
