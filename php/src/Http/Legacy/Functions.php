<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

use Courser\Http\HttpWorker;

/**
 * Stand-ins for the PHP functions that behave differently, or not at all,
 * when a script runs in a CLI worker instead of PHP-FPM. Code rewritten by
 * Rewriter calls these in place of the global functions; each takes the
 * same parameters (names included, for named arguments) and returns what
 * PHP's own would return under FPM.
 *
 * They work on the current Context (the request ScriptWorker is running);
 * outside a request they act on a detached one, and the output buffering
 * functions fall through to PHP's.
 */
final class Functions
{
    /** What php_sapi_name() and PHP_SAPI say to rewritten code. */
    public const SAPI_NAME = 'fpm-fcgi';

    /** The scheme of the stream that stands in for php://input. */
    public const INPUT_SCHEME = 'courser-input';

    private const COOKIE_NAME_FORBIDDEN = "=,; \t\r\n\013\014";

    private const COOKIE_VALUE_FORBIDDEN = ",; \t\r\n\013\014";

    private const ILLEGAL_COOKIE_CHARACTERS = '",", ";", " ", "\t", "\r", "\n", "\013", or "\014"';

    // --- Headers and cookies -------------------------------------------------

    public static function header(?string $header, ?bool $replace = true, ?int $response_code = 0): void
    {
        Context::current()->header((string) $header, $replace ?? false, (int) $response_code);
    }

    public static function header_remove(?string $name = null): void
    {
        Context::current()->headerRemove($name);
    }

    /**
     * @return list<string>
     */
    public static function headers_list(): array
    {
        return Context::current()->lines();
    }

    /**
     * True once the response has begun to go out (the output outgrew the
     * buffer, or flush() was called). The file and line where output
     * started are not known: they are '' and 0.
     */
    public static function headers_sent(mixed &$filename = null, mixed &$line = null): bool
    {
        $filename = '';
        $line = 0;

        return Context::current()->headersSent();
    }

    public static function header_register_callback(callable $callback): bool
    {
        Context::current()->registerHeaderCallback($callback);

        return true;
    }

    /**
     * setcookie(), as PHP 8 formats it: the value rawurlencode()d, an empty
     * value deletes the cookie ("deleted", expired in 1970, Max-Age=0),
     * expires comes with Max-Age, then path, domain, secure, HttpOnly and
     * SameSite.
     *
     * @param array<string, mixed>|int $expires_or_options
     */
    public static function setcookie(?string $name, ?string $value = '', array|int|null $expires_or_options = 0, ?string $path = '', ?string $domain = '', ?bool $secure = false, ?bool $httponly = false): bool
    {
        return self::cookie('setcookie', func_num_args(), true, (string) $name, (string) $value, $expires_or_options ?? 0, (string) $path, (string) $domain, (bool) $secure, (bool) $httponly);
    }

    /**
     * setrawcookie(): as setcookie(), without encoding the value.
     *
     * @param array<string, mixed>|int $expires_or_options
     */
    public static function setrawcookie(?string $name, ?string $value = '', array|int|null $expires_or_options = 0, ?string $path = '', ?string $domain = '', ?bool $secure = false, ?bool $httponly = false): bool
    {
        return self::cookie('setrawcookie', func_num_args(), false, (string) $name, (string) $value, $expires_or_options ?? 0, (string) $path, (string) $domain, (bool) $secure, (bool) $httponly);
    }

    /**
     * The status of the response (200 unless the script changed it); with a
     * code, sets it and returns the previous one.
     */
    public static function http_response_code(?int $response_code = 0): int|bool
    {
        $previous = \http_response_code();
        if ($response_code !== 0 && $response_code !== null) {
            \http_response_code($response_code);

            return $previous === false ? true : $previous;
        }

        return $previous;
    }

    /**
     * getallheaders() / apache_request_headers(): the request headers
     * (Host first), values of a repeated header joined with ", ".
     *
     * @return array<string, string>
     */
    public static function getallheaders(): array
    {
        $request = Context::current()->request;
        if ($request === null) {
            return [];
        }
        $headers = [];
        $host = parse_url($request->uri, PHP_URL_HOST);
        if (is_string($host) && $host !== '') {
            $port = parse_url($request->uri, PHP_URL_PORT);
            $headers['Host'] = (str_contains($host, ':') && $host[0] !== '[' ? '[' . $host . ']' : $host) . (is_int($port) ? ':' . $port : '');
        }
        foreach ($request->headers as $name => $values) {
            $headers[$name] = implode(', ', $values);
        }

        return $headers;
    }

    public static function php_sapi_name(): string
    {
        return self::SAPI_NAME;
    }

    // --- Constants ----------------------------------------------------------

    /**
     * define(), for a script that runs many times in one process: a constant
     * that already has this value is left alone without PHP's "already
     * defined" warning; one that would change keeps its first value, with a
     * warning that says why.
     */
    public static function define(?string $constant_name, mixed $value, ?bool $case_insensitive = false): bool
    {
        $constant_name = (string) $constant_name;
        if (!\defined($constant_name)) {
            return $case_insensitive ? @\define($constant_name, $value, true) : \define($constant_name, $value);
        }
        if (\constant($constant_name) !== $value) {
            trigger_error(sprintf(
                'Constant %s already defined; it keeps the value of an earlier request (constants last as long as the worker)',
                $constant_name,
            ), E_USER_WARNING);
        }

        return false;
    }

    // --- Output --------------------------------------------------------------

    /**
     * flush(): sends what the script has output so far to the client (the
     * headers go with it), as PHP-FPM does. Output held in the script's own
     * buffers stays there, as in PHP.
     */
    public static function flush(): void
    {
        $flusher = Context::current()->flusher;
        if ($flusher !== null) {
            $flusher();
        } else {
            \flush();
        }
    }

    /**
     * The script's output buffering level: 0 when it has started no buffer
     * of its own (Courser's buffers below it do not count).
     */
    public static function ob_get_level(): int
    {
        return max(0, \ob_get_level() - self::base());
    }

    public static function ob_end_clean(): bool
    {
        if (!self::hasBuffer()) {
            return self::notice('ob_end_clean(): Failed to delete buffer. No buffer to delete');
        }

        return \ob_end_clean();
    }

    public static function ob_end_flush(): bool
    {
        if (!self::hasBuffer()) {
            return self::notice('ob_end_flush(): Failed to delete and flush buffer. No buffer to delete or flush');
        }

        return \ob_end_flush();
    }

    public static function ob_get_clean(): string|false
    {
        return self::hasBuffer() ? \ob_get_clean() : false;
    }

    public static function ob_get_flush(): string|false
    {
        if (!self::hasBuffer()) {
            return self::notice('ob_get_flush(): Failed to delete and flush buffer. No buffer to delete or flush');
        }

        return \ob_get_flush();
    }

    public static function ob_clean(): bool
    {
        if (!self::hasBuffer()) {
            return self::notice('ob_clean(): Failed to delete buffer. No buffer to delete');
        }

        return \ob_clean();
    }

    public static function ob_flush(): bool
    {
        if (!self::hasBuffer()) {
            return self::notice('ob_flush(): Failed to flush buffer. No buffer to flush');
        }

        return \ob_flush();
    }

    public static function ob_get_contents(): string|false
    {
        return self::hasBuffer() ? \ob_get_contents() : false;
    }

    public static function ob_get_length(): int|false
    {
        return self::hasBuffer() ? \ob_get_length() : false;
    }

    /**
     * @return array<array-key, mixed>
     */
    public static function ob_get_status(?bool $full_status = false): array
    {
        $base = self::base();
        if (!$full_status) {
            if (!self::hasBuffer()) {
                return [];
            }
            $status = \ob_get_status();
            $status['level'] = (int) ($status['level'] ?? 0) - $base;

            return $status;
        }

        $result = [];
        foreach (array_slice(\ob_get_status(true), $base) as $status) {
            $status['level'] = (int) ($status['level'] ?? 0) - $base;
            $result[] = $status;
        }

        return $result;
    }

    /**
     * @return list<string>
     */
    public static function ob_list_handlers(): array
    {
        return array_values(array_slice(\ob_list_handlers(), self::base()));
    }

    // --- Sessions ------------------------------------------------------------

    /**
     * session_start(): takes the session id from this request's cookie (the
     * process keeps the id of the last request otherwise), starts the
     * session, and adds the session cookie and the session.cache_limiter
     * headers that the CLI leaves out.
     *
     * @param array<string, mixed> $options
     */
    public static function session_start(array $options = []): bool
    {
        $context = Context::current();
        if (\session_status() !== PHP_SESSION_ACTIVE && !\headers_sent()) {
            $name = isset($options['name']) && is_string($options['name']) ? $options['name'] : \session_name();
            if ($name !== false && \session_id() === $context->initialSessionId) {
                // The script did not choose an id itself: use this request's cookie for this name.
                $cookie = $context->request?->cookies[$name] ?? '';
                \session_id($cookie);
                $context->initialSessionId = $cookie;
            }
        }

        $started = \session_start($options);
        if ($started) {
            $context->sessionStarted = true;
            self::sessionHeaders($context, true);
        }

        return $started;
    }

    /**
     * session_regenerate_id(): also replaces the session cookie.
     */
    public static function session_regenerate_id(?bool $delete_old_session = false): bool
    {
        $done = \session_regenerate_id((bool) $delete_old_session);
        if ($done) {
            self::sessionHeaders(Context::current(), false);
        }

        return $done;
    }

    /**
     * Adds the session cookie when a session is (or was) active in this
     * request and its id is not the one the client sent; Context::send()
     * calls this for sessions started by code that was not rewritten.
     *
     * @internal
     */
    public static function settleSession(Context $context): void
    {
        if (!$context->sessionStarted && \session_status() === PHP_SESSION_ACTIVE) {
            $context->sessionStarted = true;
            self::sessionHeaders($context, true);
        }
    }

    // --- The end of the request ---------------------------------------------

    /**
     * register_shutdown_function(): in a worker, "shutdown" is the end of the
     * request, so the callback runs then (before the response goes out, as
     * under PHP-FPM), not when the worker exits.
     */
    public static function register_shutdown_function(callable $callback, mixed ...$args): void
    {
        Context::current()->shutdownFunctions[] = [$callback, array_values($args)];
    }

    /**
     * set_error_handler(): counted, so that the handlers a request pushed
     * are popped when it ends.
     */
    public static function set_error_handler(?callable $callback, ?int $error_levels = E_ALL): mixed
    {
        ++Context::current()->errorHandlers;

        return \set_error_handler($callback, $error_levels ?? E_ALL);
    }

    public static function restore_error_handler(): bool
    {
        $context = Context::current();
        $context->errorHandlers = max(0, $context->errorHandlers - 1);

        return \restore_error_handler();
    }

    public static function set_exception_handler(?callable $callback): mixed
    {
        ++Context::current()->exceptionHandlers;

        return \set_exception_handler($callback);
    }

    public static function restore_exception_handler(): bool
    {
        $context = Context::current();
        $context->exceptionHandlers = max(0, $context->exceptionHandlers - 1);

        return \restore_exception_handler();
    }

    /**
     * Records where exit or die is called (for the log line) and returns
     * its operand unchanged: the rewritten "exit" is "exit(Functions::exiting(...))".
     */
    public static function exiting(string $file, int $line, int|string $status = 0): int|string
    {
        HttpWorker::noteExit($file, $line);

        return $status;
    }

    /**
     * The URL that stands in for php://input: a read-only, seekable stream
     * of the request body.
     */
    public static function inputUrl(): string
    {
        InputStream::register();

        return self::INPUT_SCHEME . '://input';
    }

    // --- Internals -----------------------------------------------------------

    /**
     * @param array<string, mixed>|int $expiresOrOptions
     */
    private static function cookie(string $function, int $argumentCount, bool $encode, string $name, string $value, array|int $expiresOrOptions, string $path, string $domain, bool $secure, bool $httponly): bool
    {
        $expires = 0;
        $samesite = '';
        if (is_array($expiresOrOptions)) {
            if ($argumentCount > 3) {
                throw new \ArgumentCountError(sprintf('%s(): Expects exactly 3 arguments when argument #3 ($expires_or_options) is an array', $function));
            }
            foreach ($expiresOrOptions as $key => $option) {
                if (!is_string($key)) {
                    throw new \ValueError(sprintf('%s(): option array cannot have numeric keys', $function));
                }
                match (strtolower($key)) {
                    'expires' => $expires = (int) $option,
                    'path' => $path = (string) $option,
                    'domain' => $domain = (string) $option,
                    'secure' => $secure = (bool) $option,
                    'httponly' => $httponly = (bool) $option,
                    'samesite' => $samesite = (string) $option,
                    default => throw new \ValueError(sprintf('%s(): option "%s" is invalid', $function, $key)),
                };
            }
        } else {
            $expires = $expiresOrOptions;
        }

        if ($name === '') {
            throw new \ValueError(sprintf('%s(): Argument #1 ($name) cannot be empty', $function));
        }
        if (strpbrk($name, self::COOKIE_NAME_FORBIDDEN) !== false) {
            throw new \ValueError(sprintf('%s(): Argument #1 ($name) cannot contain "=", %s', $function, self::ILLEGAL_COOKIE_CHARACTERS));
        }
        if (!$encode && strpbrk($value, self::COOKIE_VALUE_FORBIDDEN) !== false) {
            throw new \ValueError(sprintf('%s(): Argument #2 ($value) cannot contain %s', $function, self::ILLEGAL_COOKIE_CHARACTERS));
        }
        if (strpbrk($path, self::COOKIE_VALUE_FORBIDDEN) !== false) {
            throw new \ValueError(sprintf('%s(): "path" option cannot contain %s', $function, self::ILLEGAL_COOKIE_CHARACTERS));
        }
        if (strpbrk($domain, self::COOKIE_VALUE_FORBIDDEN) !== false) {
            throw new \ValueError(sprintf('%s(): "domain" option cannot contain %s', $function, self::ILLEGAL_COOKIE_CHARACTERS));
        }
        if ($expires >= 253402300800) {
            throw new \ValueError(sprintf('%s(): "expires" option cannot have a year greater than 9999', $function));
        }

        return Context::current()->header(self::cookieLine($name, $value, $expires, $path, $domain, $secure, $httponly, $samesite, $encode), false);
    }

    /**
     * The Set-Cookie header line that PHP 8 builds.
     */
    public static function cookieLine(string $name, string $value, int $expires, string $path, string $domain, bool $secure, bool $httponly, string $samesite, bool $encode = true): string
    {
        if ($value === '') {
            $line = 'Set-Cookie: ' . $name . '=deleted; expires=' . gmdate('D, d M Y H:i:s \G\M\T', 1) . '; Max-Age=0';
        } else {
            $line = 'Set-Cookie: ' . $name . '=' . ($encode ? rawurlencode($value) : $value);
            if ($expires > 0) {
                $line .= '; expires=' . gmdate('D, d M Y H:i:s \G\M\T', $expires) . '; Max-Age=' . max(0, $expires - time());
            }
        }
        if ($path !== '') {
            $line .= '; path=' . $path;
        }
        if ($domain !== '') {
            $line .= '; domain=' . $domain;
        }
        if ($secure) {
            $line .= '; secure';
        }
        if ($httponly) {
            $line .= '; HttpOnly';
        }
        if ($samesite !== '') {
            $line .= '; SameSite=' . $samesite;
        }

        return $line;
    }

    /**
     * The session cookie (when the id is not the client's) and, at the
     * start of a session, the session.cache_limiter headers.
     */
    private static function sessionHeaders(Context $context, bool $cacheHeaders): void
    {
        $name = \session_name();
        $id = \session_id();
        if ($name === false || $id === false || $id === '' || $context->headersSent()) {
            return;
        }
        $clientId = $context->request?->cookies[$name] ?? null;
        if ((bool) ini_get('session.use_cookies') && $id !== $clientId) {
            $params = \session_get_cookie_params();
            $lifetime = (int) $params['lifetime'];
            $context->removeCookie($name);
            $context->header(self::cookieLine(
                rawurlencode($name),
                $id,
                $lifetime > 0 ? time() + $lifetime : 0,
                (string) $params['path'],
                (string) $params['domain'],
                (bool) $params['secure'],
                (bool) $params['httponly'],
                (string) ($params['samesite'] ?? ''),
                true,
            ), false);
        }
        if ($cacheHeaders) {
            $maxAge = (int) \session_cache_expire() * 60;
            $past = 'Expires: Thu, 19 Nov 1981 08:52:00 GMT';
            $headers = match (\session_cache_limiter()) {
                'nocache' => [$past, 'Cache-Control: no-store, no-cache, must-revalidate', 'Pragma: no-cache'],
                'private' => [$past, 'Cache-Control: private, max-age=' . $maxAge],
                'private_no_expire' => ['Cache-Control: private, max-age=' . $maxAge],
                'public' => ['Expires: ' . gmdate('D, d M Y H:i:s \G\M\T', time() + $maxAge), 'Cache-Control: public, max-age=' . $maxAge],
                default => [],
            };
            foreach ($headers as $line) {
                $context->header($line);
            }
        }
    }

    /**
     * The ob_get_level() of Courser's capture buffer (0 outside a request).
     */
    private static function base(): int
    {
        return Context::current()->baseLevel ?? 0;
    }

    /**
     * Whether the script has an output buffer of its own.
     */
    private static function hasBuffer(): bool
    {
        return \ob_get_level() > self::base();
    }

    private static function notice(string $message): bool
    {
        trigger_error($message, E_USER_NOTICE);

        return false;
    }
}
