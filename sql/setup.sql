--
-- The objects CREATE EXTENSION idle_guard creates, their columns and who
-- may use them.
--
CREATE EXTENSION idle_guard;

SELECT p.proname, pg_get_function_result(p.oid) AS result,
       p.proretset, p.provolatile
FROM pg_proc p
WHERE p.proname LIKE 'idle\_guard%'
ORDER BY p.proname;

-- Output columns of each function, in order
SELECT p.proname, a.ord, a.name, format_type(a.typ, NULL) AS type
FROM pg_proc p,
     unnest(p.proargnames, p.proallargtypes) WITH ORDINALITY AS a(name, typ, ord)
WHERE p.proname LIKE 'idle\_guard%'
ORDER BY p.proname, a.ord;

-- The view has the same columns as the function
SELECT attnum, attname, format_type(atttypid, atttypmod) AS type
FROM pg_attribute
WHERE attrelid = 'idle_guard_report'::regclass AND attnum > 0
ORDER BY attnum;

-- EXECUTE revoked from PUBLIC, granted to pg_monitor
SELECT p.proname,
       has_function_privilege('pg_monitor', p.oid, 'EXECUTE') AS pg_monitor,
       EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public
FROM pg_proc p
WHERE p.proname LIKE 'idle\_guard%'
ORDER BY p.proname;
SELECT c.relname,
       has_table_privilege('pg_monitor', c.oid, 'SELECT') AS pg_monitor,
       EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 0) AS public
FROM pg_class c
WHERE c.relname = 'idle_guard_report';

-- Everything belongs to the extension
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'idle_guard')
  AND classid <> 'pg_type'::regclass   -- 18 also lists the view's row type
ORDER BY 1;
