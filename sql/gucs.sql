--
-- The idle_guard.* settings: types, defaults, units, contexts, and the
-- validation of bad values.  (expected/gucs_1.out: newer servers word some
-- errors differently, with units in range messages.)
--
SELECT name, setting, unit, vartype, context, enumvals, min_val, max_val,
       boot_val
FROM pg_settings
WHERE name LIKE 'idle\_guard.%'
ORDER BY name;

SHOW idle_guard.action;
SHOW idle_guard.blocking_timeout;
SHOW idle_guard.idle_timeout;
SHOW idle_guard.naptime;
SHOW idle_guard.exempt_roles;
SHOW idle_guard.exempt_applications;
SHOW idle_guard.history_size;

-- Policy is the DBA's: an ordinary role cannot change it for itself
CREATE ROLE ig_user;
SET ROLE ig_user;
SET idle_guard.action = 'off';
SET idle_guard.blocking_timeout = 0;
BEGIN;
SET LOCAL idle_guard.idle_timeout = 0;
ROLLBACK;
SET idle_guard.naptime = '1s';
SET idle_guard.exempt_applications = 'psql';
RESET ROLE;

-- A role granted SET on a parameter may set that one, and only that one
GRANT SET ON PARAMETER idle_guard.idle_timeout TO ig_user;
SET ROLE ig_user;
SET idle_guard.idle_timeout = '10min';
SHOW idle_guard.idle_timeout;
SET idle_guard.action = 'off';
RESET idle_guard.idle_timeout;
RESET ROLE;
REVOKE SET ON PARAMETER idle_guard.idle_timeout FROM ig_user;
DROP ROLE ig_user;

-- A superuser may set the per-session settings, not the worker's own
SET idle_guard.action = 'off';
SHOW idle_guard.action;
RESET idle_guard.action;
SET idle_guard.naptime = '1s';
ALTER ROLE CURRENT_USER SET idle_guard.exempt_roles = 'me';

-- The prefix is reserved: misspelled settings are errors, not placeholders
SET idle_guard.blocking_timout = '1s';
ALTER SYSTEM SET idle_guard.actoin = 'report';

-- Bad values are rejected, with the reason
ALTER SYSTEM SET idle_guard.action = 'kill';
ALTER SYSTEM SET idle_guard.blocking_timeout = -1;
ALTER SYSTEM SET idle_guard.idle_timeout = 'soon';
ALTER SYSTEM SET idle_guard.naptime = '5ms';
ALTER SYSTEM SET idle_guard.naptime = '2h';
ALTER SYSTEM SET idle_guard.history_size = -1;
ALTER SYSTEM SET idle_guard.exempt_roles = 'batch,,etl';
ALTER SYSTEM SET idle_guard.exempt_roles = '"unterminated';
ALTER SYSTEM SET idle_guard.exempt_applications = 'etl*nightly';
ALTER SYSTEM SET idle_guard.exempt_applications = 'pg_dump,';
ALTER SYSTEM SET idle_guard.exempt_applications = ', psql';

-- Good values are accepted (units, lists, patterns), then reset
ALTER SYSTEM SET idle_guard.action = 'terminate';
ALTER SYSTEM SET idle_guard.blocking_timeout = '1min';
ALTER SYSTEM SET idle_guard.idle_timeout = 0;
ALTER SYSTEM SET idle_guard.naptime = '10ms';
ALTER SYSTEM SET idle_guard.exempt_roles = 'batch, "Reporting"';
ALTER SYSTEM SET idle_guard.exempt_applications = 'pg_dump, etl_*, my app';
ALTER SYSTEM SET idle_guard.exempt_applications = '';
ALTER SYSTEM RESET idle_guard.action;
ALTER SYSTEM RESET idle_guard.blocking_timeout;
ALTER SYSTEM RESET idle_guard.idle_timeout;
ALTER SYSTEM RESET idle_guard.naptime;
ALTER SYSTEM RESET idle_guard.exempt_roles;
ALTER SYSTEM RESET idle_guard.exempt_applications;
