<?php

declare(strict_types=1);

namespace Courser\Http\Legacy;

/**
 * Rewrites the source of a classic PHP script so that it can run once per
 * request inside a long-lived worker process. The rewrite works on tokens
 * (PhpToken::tokenize), never adds or removes a line break, so line numbers
 * in errors and stack traces stay those of the original file.
 *
 * What changes:
 *
 *  - Unqualified (or fully qualified, "\header(") calls to the functions in
 *    FUNCTIONS become calls to Functions::<name>(): the CLI SAPI drops
 *    header() and setcookie(), and output buffering, shutdown functions,
 *    handlers and sessions need to work per request. Only real calls are
 *    rewritten: not methods ("->header("), static calls ("::header("),
 *    namespaced names ("Foo\header("), or declarations ("function header(").
 *  - The constant PHP_SAPI becomes 'fpm-fcgi' (php_sapi_name() is in FUNCTIONS).
 *  - __FILE__ and __DIR__ become the original path and directory, since the
 *    rewritten copy lives in a cache directory.
 *  - exit and die record where they were called (Functions::exiting()) for
 *    the log line; they still end the process.
 *  - The operand of include and require is passed through Includes::path(),
 *    which resolves it as PHP would and hands back the rewritten copy of
 *    files under the application's directories. include_once and
 *    require_once become include and require of Includes::once(), which
 *    does the same the first time in a request and names a file that
 *    returns true after that: "once" means once per request, so that a
 *    config.php loaded with require_once sets its variables on every
 *    request (the include stays in place, so they land in the including
 *    scope, as in PHP).
 *  - Top-level "const NAME = expr, ...;" statements become
 *    Functions::define() calls, which are quiet when the next request
 *    defines the constant again with the same value.
 *  - The string literal 'php://input' becomes Functions::inputUrl(), a stream
 *    of the request body (php://input is empty in the CLI).
 *  - Named functions, and classes, interfaces, traits and enums, declared at
 *    the top level of the file are split off into a "declarations" part that
 *    the body loads with require_once, so that running the file again on the
 *    next request does not declare them twice ("Cannot redeclare"). PHP
 *    hoists such declarations, and so does this. A class-like declaration
 *    that extends, implements or uses anything stays in place, wrapped in
 *    "if (!class_exists(...))", because PHP declares it only when the
 *    statement runs.
 */
final class Rewriter
{
    /** Bumped whenever the output changes, so that cached copies are rewritten. */
    public const VERSION = 2;

    /** Global functions whose calls go to Functions (lower-case name => method). */
    public const FUNCTIONS = [
        'header' => 'header',
        'header_remove' => 'header_remove',
        'headers_list' => 'headers_list',
        'headers_sent' => 'headers_sent',
        'header_register_callback' => 'header_register_callback',
        'setcookie' => 'setcookie',
        'setrawcookie' => 'setrawcookie',
        'http_response_code' => 'http_response_code',
        'getallheaders' => 'getallheaders',
        'apache_request_headers' => 'getallheaders',
        'php_sapi_name' => 'php_sapi_name',
        'define' => 'define',
        'flush' => 'flush',
        'ob_get_level' => 'ob_get_level',
        'ob_end_clean' => 'ob_end_clean',
        'ob_end_flush' => 'ob_end_flush',
        'ob_get_clean' => 'ob_get_clean',
        'ob_get_flush' => 'ob_get_flush',
        'ob_clean' => 'ob_clean',
        'ob_flush' => 'ob_flush',
        'ob_get_contents' => 'ob_get_contents',
        'ob_get_length' => 'ob_get_length',
        'ob_get_status' => 'ob_get_status',
        'ob_list_handlers' => 'ob_list_handlers',
        'session_start' => 'session_start',
        'session_regenerate_id' => 'session_regenerate_id',
        'register_shutdown_function' => 'register_shutdown_function',
        'set_error_handler' => 'set_error_handler',
        'restore_error_handler' => 'restore_error_handler',
        'set_exception_handler' => 'set_exception_handler',
        'restore_exception_handler' => 'restore_exception_handler',
    ];

    private const FUNCTIONS_CLASS = '\\' . Functions::class;

    private const INCLUDES_CLASS = '\\' . Includes::class;

    /** Tokens that do not count when looking at a token's neighbours. */
    private const IGNORED = [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT];

    /** @var list<\PhpToken> */
    private array $tokens;

    /** @var array<int, string> replacement text by token index */
    private array $text = [];

    /** @var array<int, string> text to insert before a token */
    private array $before = [];

    /** @var array<int, string> text to insert after a token */
    private array $after = [];

    /** @var list<array{0: int, 1: int}> token ranges (inclusive) that go to the declarations part */
    private array $declarations = [];

    /** @var list<array{0: int, 1: int}> namespace and import statements, kept in both parts */
    private array $shared = [];

    private function __construct(string $code, private readonly string $path)
    {
        $this->tokens = \PhpToken::tokenize($code);
    }

    /**
     * Rewrites a file.
     *
     * @param string $code             the source
     * @param string $path             the original path, for __FILE__, __DIR__ and exit locations
     * @param string $declarationsPath where the declarations part will be written (the body
     *                                 require_once's it when there is one)
     *
     * @return array{0: string, 1: string|null} the body, and the declarations part (null when there
     *                                          are no top-level declarations)
     */
    public static function rewrite(string $code, string $path, string $declarationsPath): array
    {
        $rewriter = new self($code, $path);
        $rewriter->scan();

        return $rewriter->assemble($declarationsPath);
    }

    /**
     * Finds everything to change, in one pass.
     */
    private function scan(): void
    {
        $count = count($this->tokens);
        /** @var list<bool> $braces for each open brace: whether it is a namespace block */
        $braces = [];
        $altDepth = 0;
        $namespace = '';
        $pendingStart = null;

        for ($i = 0; $i < $count; ++$i) {
            $token = $this->tokens[$i];
            $topLevel = $altDepth === 0 && !in_array(false, $braces, true);

            if ($token->is(T_HALT_COMPILER)) {
                break;
            }

            if ($topLevel) {
                if ($token->is([T_DOC_COMMENT, T_ATTRIBUTE])) {
                    $pendingStart ??= $i;
                    if ($token->is(T_ATTRIBUTE)) {
                        $end = $this->matching($i, '[', ']', T_ATTRIBUTE);
                        $this->scanRange($i, $end);
                        $i = $end;
                    }
                    continue;
                }
                if ($token->is([T_WHITESPACE, T_COMMENT])) {
                    continue;
                }
                if ($token->is(T_NAMESPACE)) {
                    $end = $this->statementEnd($i);
                    $namespace = '';
                    for ($j = $i + 1; $j < $end; ++$j) {
                        if ($this->tokens[$j]->is([T_STRING, T_NAME_QUALIFIED])) {
                            $namespace = $this->tokens[$j]->text;
                        }
                    }
                    $this->shared[] = [$i, $end];
                    if ($this->tokens[$end]->text === '{') {
                        $braces[] = true;
                    }
                    $i = $end;
                    $pendingStart = null;
                    continue;
                }
                if ($token->is(T_USE) && $this->nextText($i) !== '(') {
                    $end = $this->statementEnd($i, true);
                    $this->shared[] = [$i, $end];
                    $i = $end;
                    $pendingStart = null;
                    continue;
                }
                if ($token->is(T_DECLARE)) {
                    $close = $this->matching($this->next($i), '(', ')');
                    if ($this->nextText($close) === ';') {
                        $end = $this->next($close);
                        $this->shared[] = [$i, $end];
                        $i = $end;
                        $pendingStart = null;
                        continue;
                    }
                }
                if ($token->is(T_CONST)) {
                    $end = $this->statementEnd($i);
                    if ($this->tokens[$end]->text === ';') {
                        $this->scanRange($i + 1, $end);
                        $this->rewriteConst($i, $end, $namespace);
                        $i = $end;
                        $pendingStart = null;
                        continue;
                    }
                }
                $declaration = $this->declarationAt($i, $namespace);
                if ($declaration !== null) {
                    [$end, $wrap] = $declaration;
                    $start = $pendingStart ?? $i;
                    $this->scanRange($i, $end);
                    if ($wrap === null) {
                        $this->declarations[] = [$start, $end];
                    } else {
                        $this->before[$start] = ($this->before[$start] ?? '') . $wrap . ' { ';
                        $this->after[$end] = ' }' . ($this->after[$end] ?? '');
                    }
                    $i = $end;
                    $pendingStart = null;
                    continue;
                }
                $pendingStart = null;
            }

            $this->scanToken($i);

            $text = $token->text;
            if ($text === '{' || $token->is([T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES])) {
                $braces[] = false;
            } elseif ($text === '}') {
                if (array_pop($braces) === true) {
                    // The end of a namespace block: the declarations part needs it too.
                    $this->shared[] = [$i, $i];
                }
            } elseif ($token->is([T_IF, T_WHILE, T_FOR, T_FOREACH, T_SWITCH, T_DECLARE]) && $this->nextText($i) === '(') {
                $close = $this->matching($this->next($i), '(', ')');
                if ($this->nextText($close) === ':') {
                    ++$altDepth;
                }
            } elseif ($token->is([T_ENDIF, T_ENDWHILE, T_ENDFOR, T_ENDFOREACH, T_ENDSWITCH, T_ENDDECLARE])) {
                $altDepth = max(0, $altDepth - 1);
            }
        }
    }

    /**
     * Applies the token-level rewrites to every token of a range.
     */
    private function scanRange(int $from, int $to): void
    {
        for ($i = $from; $i <= $to; ++$i) {
            $this->scanToken($i);
        }
    }

    /**
     * The token-level rewrites: calls, constants, exit, include, php://input.
     */
    private function scanToken(int $i): void
    {
        $token = $this->tokens[$i];

        if ($token->is(T_FILE)) {
            $this->text[$i] = var_export($this->path, true);
        } elseif ($token->is(T_DIR)) {
            $this->text[$i] = var_export(dirname($this->path), true);
        } elseif ($token->is(T_EXIT)) {
            $this->rewriteExit($i);
        } elseif ($token->is([T_INCLUDE, T_INCLUDE_ONCE, T_REQUIRE, T_REQUIRE_ONCE])) {
            $this->rewriteInclude($i);
        } elseif ($token->is(T_CONSTANT_ENCAPSED_STRING) && strcasecmp(substr($token->text, 1, -1), 'php://input') === 0) {
            $this->text[$i] = self::FUNCTIONS_CLASS . '::inputUrl()';
        } elseif ($token->is([T_STRING, T_NAME_FULLY_QUALIFIED])) {
            $this->rewriteName($i);
        }
    }

    private function rewriteName(int $i): void
    {
        $token = $this->tokens[$i];
        $name = strtolower(ltrim($token->text, '\\'));
        $fullyQualified = $token->is(T_NAME_FULLY_QUALIFIED);
        if ($fullyQualified && str_contains($name, '\\')) {
            return;
        }

        $previous = $this->previous($i);
        $previousToken = $previous >= 0 ? $this->tokens[$previous] : null;
        if ($previousToken !== null && ($previousToken->is([T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_NEW, T_CONST, T_AS, T_INSTEADOF, T_USE, T_GOTO, T_ATTRIBUTE])
            || ($previousToken->text === '&' && $this->isAfterFunction($previous)))) {
            return;
        }

        if (ltrim($token->text, '\\') === 'PHP_SAPI') {
            $next = $this->nextText($i);
            if ($next !== '(' && $next !== '::' && $next !== '\\') {
                $this->text[$i] = "'fpm-fcgi'";
            }

            return;
        }

        if (isset(self::FUNCTIONS[$name]) && $this->nextText($i) === '(') {
            $this->text[$i] = self::FUNCTIONS_CLASS . '::' . self::FUNCTIONS[$name];
        }
    }

    /**
     * exit / exit() / exit(expr) / die(...) -> exit(Functions::exiting('file', line[, expr])).
     */
    private function rewriteExit(int $i): void
    {
        $note = sprintf('%s::exiting(%s, %d', self::FUNCTIONS_CLASS, var_export($this->path, true), $this->tokens[$i]->line);
        $open = $this->next($i);
        if ($open < count($this->tokens) && $this->tokens[$open]->text === '(') {
            $close = $this->matching($open, '(', ')');
            if ($close >= count($this->tokens)) {
                return;
            }
            $empty = $this->next($open) === $close;
            $this->after[$open] = ($this->after[$open] ?? '') . $note . ($empty ? ')' : ', ');
            if (!$empty) {
                $this->before[$close] = ')' . ($this->before[$close] ?? '');
            }
            // The operand itself may hold calls to rewrite: scan() goes on from the next token.
            return;
        }
        $this->after[$i] = '(' . $note . '))' . ($this->after[$i] ?? '');
    }

    /**
     * include EXPR -> include Includes::path((EXPR), 'dir of this file');
     * include_once EXPR -> include Includes::once((EXPR), 'dir of this file')
     * (require and require_once alike).
     */
    private function rewriteInclude(int $i): void
    {
        $start = $this->next($i);
        $end = $this->expressionEnd($start);
        if ($end === null || $end < $start) {
            return;
        }
        $method = 'path';
        if ($this->tokens[$i]->is([T_INCLUDE_ONCE, T_REQUIRE_ONCE])) {
            $this->text[$i] = $this->tokens[$i]->is(T_REQUIRE_ONCE) ? 'require' : 'include';
            $method = 'once';
        }
        $this->before[$start] = ($this->before[$start] ?? '') . ' ' . self::INCLUDES_CLASS . '::' . $method . '((';
        $this->after[$end] = '), ' . var_export(dirname($this->path), true) . ')' . ($this->after[$end] ?? '');
    }

    /**
     * const A = expr, B = expr; (top level, from $i to the ";" at $end) ->
     * Functions::define('NS\A', expr); Functions::define('NS\B', expr);
     * Left as it is when it is not a list of "NAME = expr".
     */
    private function rewriteConst(int $i, int $end, string $namespace): void
    {
        /** @var list<array{0: int, 1: int}> $items [name, "="] */
        $items = [];
        $commas = [];
        $expectName = true;
        $depth = 0;
        for ($j = $this->next($i); $j < $end; $j = $this->next($j)) {
            $token = $this->tokens[$j];
            if ($expectName) {
                $equals = $this->next($j);
                if (!$token->is(T_STRING) || $equals >= $end || $this->tokens[$equals]->text !== '=') {
                    return;
                }
                $items[] = [$j, $equals];
                $expectName = false;
                $j = $equals;
                continue;
            }
            $text = $token->text;
            if ($text === '(' || $text === '[' || $text === '{' || $token->is([T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES])) {
                ++$depth;
            } elseif ($text === ')' || $text === ']' || $text === '}') {
                --$depth;
            } elseif ($text === ',' && $depth === 0) {
                $commas[] = $j;
                $expectName = true;
            }
        }
        if ($items === [] || $expectName) {
            return;
        }

        $this->text[$i] = '';
        foreach ($items as [$name, $equals]) {
            $qualified = ltrim($namespace . '\\' . $this->tokens[$name]->text, '\\');
            $this->text[$name] = self::FUNCTIONS_CLASS . '::define(' . var_export($qualified, true);
            $this->text[$equals] = ',';
        }
        foreach ($commas as $comma) {
            $this->text[$comma] = ');';
        }
        $this->before[$end] = ')' . ($this->before[$end] ?? '');
    }

    /**
     * The last token of the operand of include/require that starts at $start:
     * include binds more loosely than every operator but "and", "or", "xor",
     * so the operand runs to a ";", ",", "?>", "as", "=>", a closing bracket
     * that it did not open, one of those three, or a ":" that ends a
     * surrounding ternary.
     *
     * @return int|null null when the operand does not end (broken code: left as is)
     */
    private function expressionEnd(int $start): ?int
    {
        $depth = 0;
        $ternaries = 0;
        $last = null;
        $count = count($this->tokens);
        for ($j = $start; $j < $count; ++$j) {
            $token = $this->tokens[$j];
            $text = $token->text;
            if ($token->is(self::IGNORED)) {
                continue;
            }
            if ($text === '(' || $text === '[' || $text === '{' || $token->is([T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES, T_ATTRIBUTE])) {
                ++$depth;
            } elseif ($text === ')' || $text === ']' || $text === '}') {
                if ($depth === 0) {
                    return $last;
                }
                --$depth;
            } elseif ($depth === 0) {
                if ($text === ';' || $text === ',' || $token->is([T_CLOSE_TAG, T_AS, T_DOUBLE_ARROW, T_LOGICAL_AND, T_LOGICAL_OR, T_LOGICAL_XOR])) {
                    return $last;
                }
                if ($text === '?') {
                    ++$ternaries;
                } elseif ($text === ':') {
                    if ($ternaries === 0) {
                        return $last;
                    }
                    --$ternaries;
                }
            }
            $last = $j;
        }

        return null;
    }

    /**
     * Recognises a declaration at the top level: a named function, or a
     * class, interface, trait or enum (with its modifiers).
     *
     * @return array{0: int, 1: string|null}|null the last token, and the condition to wrap it in
     *                                            (null: move it to the declarations part)
     */
    private function declarationAt(int $i, string $namespace): ?array
    {
        $token = $this->tokens[$i];

        if ($token->is(T_FUNCTION)) {
            $name = $this->next($i);
            if ($name < count($this->tokens) && $this->tokens[$name]->text === '&') {
                $name = $this->next($name);
            }
            if ($name >= count($this->tokens) || !$this->tokens[$name]->is(T_STRING)) {
                return null;
            }
            $open = $this->find($name, '{');
            if ($open === null) {
                return null;
            }
            $end = $this->matching($open, '{', '}');

            return $end < count($this->tokens) ? [$end, null] : null;
        }

        $j = $i;
        while ($j < count($this->tokens) && $this->tokens[$j]->is([T_ABSTRACT, T_FINAL, T_READONLY])) {
            $j = $this->next($j);
        }
        if ($j >= count($this->tokens) || !$this->tokens[$j]->is([T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM])) {
            return null;
        }
        $kind = $this->tokens[$j];
        $name = $this->next($j);
        if ($name >= count($this->tokens) || !$this->tokens[$name]->is(T_STRING)) {
            return null;
        }
        $open = $this->find($name, '{');
        if ($open === null) {
            return null;
        }
        $end = $this->matching($open, '{', '}');
        if ($end >= count($this->tokens)) {
            return null;
        }

        $dependent = false;
        for ($k = $name; $k < $open; ++$k) {
            if ($this->tokens[$k]->is([T_EXTENDS, T_IMPLEMENTS])) {
                $dependent = true;
            }
        }
        $depth = 0;
        for ($k = $open; $k < $end && !$dependent; ++$k) {
            $text = $this->tokens[$k]->text;
            if ($text === '{' || $this->tokens[$k]->is([T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES])) {
                ++$depth;
            } elseif ($text === '}') {
                --$depth;
            } elseif ($depth === 1 && $this->tokens[$k]->is(T_USE)) {
                $dependent = true;
            }
        }
        if (!$dependent) {
            return [$end, null];
        }

        $function = match (true) {
            $kind->is(T_INTERFACE) => 'interface_exists',
            $kind->is(T_TRAIT) => 'trait_exists',
            $kind->is(T_ENUM) => 'enum_exists',
            default => 'class_exists',
        };
        $qualified = ltrim($namespace . '\\' . $this->tokens[$name]->text, '\\');

        return [$end, sprintf('if (!\\%s(%s, false))', $function, var_export($qualified, true))];
    }

    /**
     * Builds the body and the declarations part.
     *
     * @return array{0: string, 1: string|null}
     */
    private function assemble(string $declarationsPath): array
    {
        $count = count($this->tokens);
        $inDeclaration = array_fill(0, $count, false);
        foreach ($this->declarations as [$from, $to]) {
            for ($i = $from; $i <= $to; ++$i) {
                $inDeclaration[$i] = true;
            }
        }
        $inShared = array_fill(0, $count, false);
        foreach ($this->shared as [$from, $to]) {
            for ($i = $from; $i <= $to && $i < $count; ++$i) {
                $inShared[$i] = true;
            }
        }

        $load = null;
        $loadAfter = null;
        $body = '';
        if ($this->declarations !== []) {
            $load = sprintf('require_once %s;', var_export($declarationsPath, true));
            $loadAfter = $this->loadPoint();
            if ($loadAfter === null) {
                // The file starts with HTML or an echo tag: load the declarations
                // first; the closing tag eats the line break added after it.
                $body = '<?php ' . $load . " ?>\n";
            }
        }

        $declarations = '<?php ';
        foreach ($this->tokens as $i => $token) {
            $text = ($this->before[$i] ?? '') . ($this->text[$i] ?? $token->text) . ($this->after[$i] ?? '');
            $blank = str_repeat("\n", substr_count($token->text, "\n"));

            if ($inDeclaration[$i]) {
                $body .= $blank;
                $declarations .= $text;
                continue;
            }
            if ($i === $loadAfter) {
                if ($token->is(T_OPEN_TAG)) {
                    // "<?php" and the one blank it includes: put the require between them.
                    $tag = rtrim($text);
                    $body .= $tag . ' ' . $load . ' ' . substr($text, strlen($tag));
                } else {
                    $body .= $text . ' ' . $load;
                }
            } else {
                $body .= $text;
            }
            $declarations .= $inShared[$i] ? $text : $blank;
        }

        return [$body, $this->declarations !== [] ? $declarations : null];
    }

    /**
     * The token after which the body may load its declarations: after the
     * opening tag, any declare() statements and the first namespace
     * statement (or the "{" of the first namespace block); null when the
     * file does not start with "<?php".
     */
    private function loadPoint(): ?int
    {
        $count = count($this->tokens);
        if ($count === 0 || !$this->tokens[0]->is(T_OPEN_TAG)) {
            return null;
        }
        $point = 0;
        for ($i = 1; $i < $count; ++$i) {
            $token = $this->tokens[$i];
            if ($token->is(self::IGNORED)) {
                continue;
            }
            if ($token->is(T_DECLARE)) {
                $close = $this->matching($this->next($i), '(', ')');
                if ($this->nextText($close) !== ';') {
                    break;
                }
                $point = $i = $this->next($close);
                continue;
            }
            if ($token->is(T_NAMESPACE)) {
                $point = $this->statementEnd($i);
            }
            break;
        }

        return $point;
    }

    /**
     * The ";" or "{" that ends the statement starting at $i (a "{" only when
     * $throughBraces is false; with it, group uses "{...}" are skipped).
     */
    private function statementEnd(int $i, bool $throughBraces = false): int
    {
        $count = count($this->tokens);
        $depth = 0;
        for ($j = $i; $j < $count; ++$j) {
            $text = $this->tokens[$j]->text;
            if ($text === ';' && $depth === 0) {
                return $j;
            }
            if ($text === '{') {
                if (!$throughBraces) {
                    return $j;
                }
                ++$depth;
            } elseif ($text === '}') {
                --$depth;
            }
        }

        return $count - 1;
    }

    /**
     * The first token with this text after $i, at bracket depth 0.
     */
    private function find(int $i, string $text): ?int
    {
        $depth = 0;
        $count = count($this->tokens);
        for ($j = $i + 1; $j < $count; ++$j) {
            $t = $this->tokens[$j]->text;
            if ($t === $text && $depth === 0) {
                return $j;
            }
            if ($t === '(' || $t === '[') {
                ++$depth;
            } elseif ($t === ')' || $t === ']') {
                --$depth;
            } elseif ($t === ';' && $depth === 0) {
                return null;
            }
        }

        return null;
    }

    /**
     * The token that closes the bracket opened at $open.
     */
    private function matching(int $open, string $opening, string $closing, ?int $openingKind = null): int
    {
        $depth = 0;
        $count = count($this->tokens);
        for ($j = $open; $j < $count; ++$j) {
            $token = $this->tokens[$j];
            if ($token->text === $opening || ($openingKind !== null && $token->is($openingKind))
                || ($opening === '{' && $token->is([T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES]))) {
                ++$depth;
            } elseif ($token->text === $closing) {
                --$depth;
                if ($depth === 0) {
                    return $j;
                }
            }
        }

        return $count;
    }

    private function next(int $i): int
    {
        $count = count($this->tokens);
        for ($j = $i + 1; $j < $count; ++$j) {
            if (!$this->tokens[$j]->is(self::IGNORED)) {
                return $j;
            }
        }

        return $count;
    }

    private function previous(int $i): int
    {
        for ($j = $i - 1; $j >= 0; --$j) {
            if (!$this->tokens[$j]->is(self::IGNORED)) {
                return $j;
            }
        }

        return -1;
    }

    private function nextText(int $i): ?string
    {
        $next = $this->next($i);

        return $next < count($this->tokens) ? $this->tokens[$next]->text : null;
    }

    private function isAfterFunction(int $i): bool
    {
        $previous = $this->previous($i);

        return $previous >= 0 && $this->tokens[$previous]->is(T_FUNCTION);
    }
}
