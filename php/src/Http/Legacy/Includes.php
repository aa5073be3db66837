<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

/**
 * Resolves the files that rewritten code includes, and hands back the
 * rewritten copy of those under the application's directories. Rewriter
 * turns "include EXPR" into "include Includes::path((EXPR), __DIR__)".
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
    private static ?ScriptCache $cache = null;

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
            return self::$cache->compile($real);
        } catch (\RuntimeException) {
            return $path;
        }
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
