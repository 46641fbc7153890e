// Sets or removes a producer byte-rate quota for one Kafka client id, so the logs
// benchmark can make Kafka a slow sink for the shipper. Run with the broker's
// classpath:  java -cp 'KAFKA_LIBS/*' bench/KafkaQuota.java BOOTSTRAP CLIENT_ID RATE|none
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.quota.ClientQuotaAlteration;
import org.apache.kafka.common.quota.ClientQuotaEntity;

public class KafkaQuota {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        Double rate = args[2].equals("none") ? null : Double.valueOf(args[2]);
        ClientQuotaEntity client = new ClientQuotaEntity(Map.of(ClientQuotaEntity.CLIENT_ID, args[1]));
        ClientQuotaAlteration.Op op = new ClientQuotaAlteration.Op("producer_byte_rate", rate);
        try (Admin admin = Admin.create(props)) {
            admin.alterClientQuotas(List.of(new ClientQuotaAlteration(client, List.of(op)))).all().get();
        }
    }
}
