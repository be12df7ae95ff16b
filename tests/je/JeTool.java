/*
 * Drives a real Berkeley DB Java Edition 3.3 environment for cairn's tests
 * (Debian libdb-je-java, /usr/share/java/db-je.jar).
 *
 *   JeTool create HOME COUNT   new environment, database "records" with records 0..COUNT-1,
 *                              commit, checkpoint, close
 *   JeTool writer HOME START   commits record i = START, START+1, ... one per transaction,
 *                              each transaction also rewrites a few older records with
 *                              their unchanged values; prints each committed i; runs until
 *                              killed
 *   JeTool check HOME COUNT    runs recovery, every record 0..COUNT-1 present with its
 *                              value, every record in the database has the value for its
 *                              key, Environment.verify passes; prints "ok N" (N = records
 *                              in the database); non-zero exit and a message on stderr
 *                              otherwise
 *   JeTool churn HOME ROUNDS   ROUNDS rounds of rewriting every record (same values), then
 *                              cleanLog + forced checkpoint; prints the remaining .jdb files
 *
 * Records are key "k%08d" -> value(i), so the logical content never depends on timing.
 * Log files are 64 KiB (below JE's documented 1,000,000-byte minimum, allowed by turning off
 * parameter validation as JE's own unit tests do) and the cleaner is aggressive, so while
 * the writer or churn runs, new NNNNNNNN.jdb files appear and cleaned ones are deleted.
 * Besides *.jdb, JE 3.3 keeps je.lck (the environment lock) in HOME.
 */
import com.sleepycat.je.*;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

public class JeTool {
    static final String LOG_FILE_MAX = "65536";

    static byte[] key(long i) {
        return String.format("k%08d", i).getBytes(StandardCharsets.US_ASCII);
    }

    static byte[] value(long i) {
        return ("record " + i + "; ").repeat(1 + (int) (i % 40)).getBytes(StandardCharsets.US_ASCII);
    }

    static Environment openEnv(String home) throws DatabaseException {
        File dir = new File(home);
        dir.mkdirs();
        EnvironmentConfig c = new EnvironmentConfig();
        DbInternal.disableParameterValidation(c); // je.log.fileMax below 1,000,000
        c.setAllowCreate(true);
        c.setTransactional(true);
        c.setConfigParam("je.log.fileMax", LOG_FILE_MAX);
        c.setConfigParam("je.log.bufferSize", "16384");         // at most a quarter of a file
        c.setConfigParam("je.cleaner.minUtilization", "90");    // the maximum JE accepts
        c.setConfigParam("je.cleaner.minFileUtilization", "50"); // the maximum JE accepts
        c.setConfigParam("je.cleaner.minAge", "1");             // clean files right behind the head
        c.setConfigParam("je.cleaner.bytesInterval", "32768");  // wake the cleaner every 32 KiB
        c.setConfigParam("je.cleaner.expunge", "true");         // delete cleaned files
        c.setConfigParam("je.checkpointer.bytesInterval", "131072"); // cleaned files go at checkpoints
        return new Environment(dir, c);
    }

    static Database openDb(Environment env, boolean create) throws DatabaseException {
        DatabaseConfig c = new DatabaseConfig();
        c.setAllowCreate(create);
        c.setTransactional(true);
        return env.openDatabase(null, "records", c);
    }

    static void put(Database db, Transaction txn, long i) throws DatabaseException {
        db.put(txn, new DatabaseEntry(key(i)), new DatabaseEntry(value(i)));
    }

    static void checkpoint(Environment env) throws DatabaseException {
        CheckpointConfig c = new CheckpointConfig();
        c.setForce(true);
        env.checkpoint(c);
    }

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Exception e) {
            System.err.println("JeTool: " + e);
            System.exit(1);
        }
    }

    static void run(String[] args) throws Exception {
        if (args.length != 3) fail("usage: JeTool create|writer|check|churn HOME N");
        String mode = args[0], home = args[1];
        long n = Long.parseLong(args[2]);
        switch (mode) {
            case "create": create(home, n); break;
            case "writer": writer(home, n); break;
            case "check": check(home, n); break;
            case "churn": churn(home, n); break;
            default: fail("unknown mode " + mode);
        }
    }

    static void create(String home, long count) throws DatabaseException {
        Environment env = openEnv(home);
        Database db = openDb(env, true);
        for (long first = 0; first < count; first += 200) {
            Transaction txn = env.beginTransaction(null, null);
            for (long i = first; i < Math.min(first + 200, count); i++) put(db, txn, i);
            txn.commit();
        }
        checkpoint(env);
        db.close();
        env.close();
    }

    static void writer(String home, long start) throws DatabaseException {
        Environment env = openEnv(home);
        Database db = openDb(env, true);
        for (long i = start; ; i++) {
            Transaction txn = env.beginTransaction(null, null);
            put(db, txn, i);
            for (long k = 1; k <= 4 && i > 0; k++) {          // rewrite older records
                long j = (i * 7919 + k * 104729) % i;
                if (k == 1) db.delete(txn, new DatabaseEntry(key(j))); // delete + re-insert
                put(db, txn, j);
            }
            txn.commit();                                       // synchronous: flushed and fsynced
            System.out.println(i);
            System.out.flush();
        }
    }

    static void check(String home, long count) throws DatabaseException {
        if (!new File(home).isDirectory()) fail("no directory " + home);
        Environment env = openEnv(home);
        Database db = openDb(env, false);
        DatabaseEntry k = new DatabaseEntry(), v = new DatabaseEntry();
        for (long i = 0; i < count; i++) {
            k.setData(key(i));
            if (db.get(null, k, v, LockMode.DEFAULT) != OperationStatus.SUCCESS) fail("record " + i + ": missing");
            if (!Arrays.equals(v.getData(), value(i))) fail("record " + i + ": wrong value");
        }
        long found = 0;
        Cursor cursor = db.openCursor(null, null);
        while (cursor.getNext(k, v, LockMode.DEFAULT) == OperationStatus.SUCCESS) {
            String name = new String(k.getData(), StandardCharsets.US_ASCII);
            if (!name.matches("k\\d{8}")) { cursor.close(); fail("unexpected key " + name); }
            if (!Arrays.equals(v.getData(), value(Long.parseLong(name.substring(1))))) {
                cursor.close();
                fail(name + ": wrong value");
            }
            found++;
        }
        cursor.close();
        VerifyConfig vc = new VerifyConfig();
        vc.setPropagateExceptions(true);
        vc.setAggressive(true);
        db.close();
        if (!env.verify(vc, System.err)) fail("Environment.verify failed");
        env.close();
        System.out.println("ok " + found);
    }

    static void churn(String home, long rounds) throws DatabaseException {
        Environment env = openEnv(home);
        Database db = openDb(env, false);
        DatabaseEntry k = new DatabaseEntry(), v = new DatabaseEntry();
        for (long r = 0; r < rounds; r++) {
            Transaction txn = env.beginTransaction(null, null);
            Cursor cursor = db.openCursor(txn, null);
            while (cursor.getNext(k, v, LockMode.RMW) == OperationStatus.SUCCESS) cursor.putCurrent(v);
            cursor.close();
            txn.commit();
            while (env.cleanLog() > 0) { }
            checkpoint(env);
        }
        db.close();
        env.close();
        String[] files = new File(home).list((d, name) -> name.endsWith(".jdb"));
        Arrays.sort(files);
        System.out.println(String.join(" ", files));
    }

    static void fail(String message) {
        System.err.println("JeTool: " + message);
        System.exit(1);
    }
}
