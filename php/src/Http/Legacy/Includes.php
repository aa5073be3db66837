<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

/**
 * Resolves the files that rewritten code includes, and hands back the
 * rewritten copy of those under the application's directories. Rewriter
 * turns "include EXPR" into "include Includes::path((EXPR), __DIR__)", and
 * "include_once EXPR" into "include Includes::once((EXPR), __DIR__)" (the
 * same for require and require_once).
 *
 * include_once and require_once work per request for rewritten files: the
 * first one in a request includes the file, later ones in the same request
 * include ALREADY_INCLUDED, which returns true as PHP's *_once does. A
 * worker runs the script many times, and a file that PHP skipped for the
 * rest of the process would not set its variables again ($db in config.php)
 * once finish() has unset them. Running a rewritten file again is safe: its
 * top-level declarations live in its declarations part, which it loads with
 * a real require_once. Files that are not rewritten (outside the roots, in
 * vendor/, streams) keep PHP's semantics, once per process, since they may
 * declare functions and classes that cannot be declared twice.
 *
 * The resolution is PHP's: an absolute path as is; "./" and "../" from the
 * working directory; any other relative path through include_path, then
 * the directory of the including file, then the working directory. A path
 * that names no file, a stream URL (other than file://) and anything that
 * is not a string are returned unchanged, so that PHP reports or opens them
 * as usual. Files outside the roots, or inside an excluded directory
 * (vendor/ by default), are included as they are.
 */
final class Includes
{
    /** What include_once and require_once include when the file was already included: "return true;". */
    public const ALREADY_INCLUDED = __DIR__ . '/already_included.php';

    private static ?ScriptCache $cache = null;

    /** @var array<string, true> files that are not rewritten, included once per process by include_once/require_once */
    private static array $includedOnce = [];

    /** @var list<string> real paths of the directories whose files are rewritten */
    private static array $roots = [];

    /** @var list<string> directory names under the roots whose files are not rewritten */
    private static array $excluded = [];

    /**
     * @param list<string> $roots    directories whose PHP files are rewritten when included
     * @param list<string> $excluded names of directories under them that are not (such as "vendor")
     */
    public static function configure(?ScriptCache $cache, array $roots, array $excluded = ['vendor']): void
    {
        self::$cache = $cache;
        self::$roots = [];
        foreach ($roots as $root) {
            $real = realpath($root);
            if ($real !== false) {
                self::$roots[] = rtrim($real, '/') . '/';
            }
        }
        self::$excluded = array_values($excluded);
    }

    /**
     * The path to include in place of $path, which rewritten code in
     * directory $dir includes.
     */
    public static function path(mixed $path, string $dir): mixed
    {
        if (!is_string($path) || $path === '' || self::$cache === null) {
            return $path;
        }
        $real = self::resolve($path, $dir);
        if ($real === null || !self::rewrites($real)) {
            return $path;
        }
        try {
            $copy = self::$cache->compile($real);
        } catch (\RuntimeException) {
            return $path;
        }
        // A later include_once of the file in this request skips it, as in PHP.
        Context::current()->markIncluded($real);

        return $copy;
    }

    /**
     * The path to include in place of $path for "include_once $path" (or
     * require_once) in rewritten code in directory $dir: the rewritten copy
     * the first time in a request, ALREADY_INCLUDED after that. A file that
     * is not rewritten is included once per process, as PHP does. A path
     * that names no file comes back unchanged, for PHP to report.
     */
    public static function once(mixed $path, string $dir): mixed
    {
        if (!is_string($path) || $path === '') {
            return $path;
        }
        $real = self::resolve($path, $dir);
        if ($real === null) {
            // A stream (phar://...): once per process; no file: PHP reports it.
            return str_contains($path, '://') && !str_starts_with($path, 'file://') ? self::oncePerProcess($path) : $path;
        }
        if (self::$cache !== null && self::rewrites($real)) {
            try {
                $copy = self::$cache->compile($real);
            } catch (\RuntimeException) {
                return self::oncePerProcess($real);
            }

            return Context::current()->markIncluded($real) ? $copy : self::ALREADY_INCLUDED;
        }

        return self::oncePerProcess($real);
    }

    /**
     * The real path of the file that "include $path" in directory $dir
     * opens, or null when it names no file (or a stream).
     */
    public static function resolve(string $path, string $dir): ?string
    {
        if (str_starts_with($path, 'file://')) {
            $path = substr($path, 7);
        } elseif (str_contains($path, '://')) {
            return null;
        }

        if ($path[0] === '/') {
            $candidates = [$path];
        } elseif (str_starts_with($path, './') || str_starts_with($path, '../')) {
            $candidates = [getcwd() . '/' . $path];
        } else {
            $candidates = [];
            foreach (explode(PATH_SEPARATOR, (string) get_include_path()) as $entry) {
                if ($entry === '') {
                    continue;
                }
                $candidates[] = ($entry === '.' ? (string) getcwd() : rtrim($entry, '/')) . '/' . $path;
            }
            $candidates[] = $dir . '/' . $path;
            $candidates[] = getcwd() . '/' . $path;
        }

        foreach ($candidates as $candidate) {
            if (is_file($candidate)) {
                $real = realpath($candidate);

                return $real === false ? null : $real;
            }
        }

        return null;
    }

    /**
     * PHP's own include_once: $path the first time in the process (unless
     * something included it already), ALREADY_INCLUDED after that.
     */
    private static function oncePerProcess(string $path): string
    {
        if (isset(self::$includedOnce[$path]) || in_array($path, get_included_files(), true)) {
            return self::ALREADY_INCLUDED;
        }
        self::$includedOnce[$path] = true;

        return $path;
    }

    /**
     * Whether a real path lies under a root and outside the excluded directories.
     */
    public static function rewrites(string $real): bool
    {
        foreach (self::$roots as $root) {
            if (str_starts_with($real, $root)) {
                $below = explode('/', substr($real, strlen($root)));
                array_pop($below);

                return array_intersect($below, self::$excluded) === [];
            }
        }

        return false;
    }
}
