<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Http\Legacy\Rewriter;
use PHPUnit\Framework\TestCase;

/**
 * The token rewrite of legacy scripts.
 */
final class LegacyRewriterTest extends TestCase
{
    private const F = '\\Courser\\Http\\Legacy\\Functions::';

    private const I = '\\Courser\\Http\\Legacy\\Includes::path';

    public function testOnlyRealCallsOfTheGlobalFunctionsAreRewritten(): void
    {
        $body = $this->body(<<<'PHP'
            <?php
            header('A: 1'); \header('B: 2'); HEADER('C: 3');
            $o->header('x'); $o?->header('x'); Foo::header('y'); Foo\header('z'); namespace\header('w');
            $f = setcookie(...); new header(); $h = header; // header('in a comment')
            echo 'header("in a string")', http_response_code();
            $c = #[header('attr')] fn () => headers_list();
            PHP);

        self::assertSame(<<<PHP
            <?php
            {$this->f('header')}('A: 1'); {$this->f('header')}('B: 2'); {$this->f('header')}('C: 3');
            \$o->header('x'); \$o?->header('x'); Foo::header('y'); Foo\\header('z'); namespace\\header('w');
            \$f = {$this->f('setcookie')}(...); new header(); \$h = header; // header('in a comment')
            echo 'header("in a string")', {$this->f('http_response_code')}();
            \$c = #[header('attr')] fn () => {$this->f('headers_list')}();
            PHP, $body);
    }

    public function testDeclarationsOfFunctionsAndMethodsWithTheseNamesStay(): void
    {
        $code = <<<'PHP'
            <?php
            if (!function_exists('header')) { function header($h) {} }
            class Response { public function header(string $h): static { return $this; } public static function setcookie() {} }
            PHP;

        [$body, $declarations] = Rewriter::rewrite($code, '/app/a.php', '/cache/a.decl.php');

        self::assertStringContainsString("if (!function_exists('header')) { function header(\$h) {} }", $body);
        self::assertStringContainsString('public function header(string $h): static', (string) $declarations);
        self::assertStringContainsString('public static function setcookie()', (string) $declarations);
    }

    public function testMagicConstantsAndPhpSapiNameTheOriginal(): void
    {
        $body = $this->body("<?php\necho __FILE__, __DIR__, __LINE__, PHP_SAPI, \\PHP_SAPI, Foo::PHP_SAPI, php_sapi_name();\n", '/srv/app/public/index.php');

        self::assertSame("<?php\necho '/srv/app/public/index.php', '/srv/app/public', __LINE__, 'fpm-fcgi', 'fpm-fcgi', Foo::PHP_SAPI, " . $this->f('php_sapi_name') . "();\n", $body);
    }

    public function testExitAndDieRecordWhereTheyAre(): void
    {
        $body = $this->body("<?php\nexit;\nexit();\nexit(3);\n\$ok or die('no ' . header('x'));\nDIE;\n", '/app/x.php');

        $note = $this->f('exiting') . "('/app/x.php', ";
        self::assertSame(
            "<?php\nexit({$note}2));\nexit({$note}3));\nexit({$note}4, 3));\n\$ok or die({$note}5, 'no ' . {$this->f('header')}('x')));\nDIE({$note}6));\n",
            $body,
        );
    }

    public function testIncludeOperandsGoThroughIncludes(): void
    {
        $body = $this->body(<<<'PHP'
            <?php
            require __DIR__ . '/config.php';
            include_once('lib.php');
            $v = (include $dir . '/x.php') ?: [];
            if (!@include 'a.php') { echo 1; }
            $t = $c ? require 'b.php' : require 'c.php';
            foo(require 'd.php', 2);
            require_once 'e.php' or die();
            PHP, '/app/index.php');

        $dir = ", '/app')";
        self::assertSame(<<<PHP
            <?php
            require  {$this->i()}(('/app' . '/config.php'){$dir};
            include {$this->o()}((('lib.php')){$dir};
            \$v = (include  {$this->i()}((\$dir . '/x.php'){$dir}) ?: [];
            if (!@include  {$this->i()}(('a.php'){$dir}) { echo 1; }
            \$t = \$c ? require  {$this->i()}(('b.php'){$dir} : require  {$this->i()}(('c.php'){$dir};
            foo(require  {$this->i()}(('d.php'){$dir}, 2);
            require  {$this->o()}(('e.php'){$dir} or die({$this->f('exiting')}('/app/index.php', 8));
            PHP, $body);
    }

    public function testTopLevelConstantsBecomeDefineCalls(): void
    {
        $body = $this->body(<<<'PHP'
            <?php
            namespace App;
            const A = 1, B = [2, 3], C = \PHP_INT_SIZE . 'x';
            class K { const D = 4; }
            use const Other\E;
            function f() { return A; }
            PHP);

        $define = $this->f('define');
        self::assertSame(<<<PHP
            <?php
            namespace App; require_once '/cache/a.decl.php';
             {$define}('App\\\\A' , 1); {$define}('App\\\\B' , [2, 3]); {$define}('App\\\\C' , \PHP_INT_SIZE . 'x');

            use const Other\E;

            PHP, $body);
        \PhpToken::tokenize($body, TOKEN_PARSE);
    }

    public function testTopLevelConstantsCanBeDeclaredAgain(): void
    {
        $name = 'COURSER_REWRITER_CONST_' . bin2hex(random_bytes(4));
        $body = $this->body("<?php\nconst {$name} = 'v', {$name}_2 = {$name} . 'w';\nreturn {$name}_2;\n");
        $file = sys_get_temp_dir() . '/courser-rewriter-const-' . getmypid() . '-' . bin2hex(random_bytes(3)) . '.php';
        file_put_contents($file, $body);

        try {
            self::assertSame('vw', require $file);
            self::assertSame('vw', require $file, 'no "already defined" warning (phpunit fails on warnings)');
        } finally {
            unlink($file);
        }
    }

    public function testPhpInputBecomesTheRequestBodyStream(): void
    {
        self::assertSame(
            "<?php\n\$raw = file_get_contents({$this->f('inputUrl')}()); \$other = 'php://stdin';\n",
            $this->body("<?php\n\$raw = file_get_contents('php://input'); \$other = 'php://stdin';\n"),
        );
    }

    public function testTopLevelDeclarationsMoveToTheDeclarationsPartAndLinesStay(): void
    {
        $code = <<<'PHP'
            <?php
            declare(strict_types=1);
            namespace App;

            use Foo\Bar;
            echo helper(), new Plain();
            /** A doc comment. */
            function helper(): string { return header('X: 1') ?? ''; }
            #[\Attribute]
            final class Plain {}
            class Child extends Plain {}
            interface Shape extends \Countable {}
            trait Loud { use Other; }
            enum Suit { case Hearts; }
            if (true) { function conditional() {} }
            $f = function () use ($x) { return 1; };
            PHP;

        [$body, $declarations] = Rewriter::rewrite($code, '/app/a.php', '/cache/a.decl.php');

        self::assertSame(substr_count($code, "\n"), substr_count($body, "\n"), 'no line moves');
        self::assertSame(substr_count($code, "\n"), substr_count((string) $declarations, "\n"));
        self::assertSame(<<<'PHP'
            <?php
            declare(strict_types=1);
            namespace App; require_once '/cache/a.decl.php';

            use Foo\Bar;
            echo helper(), new Plain();




            if (!\class_exists('App\\Child', false)) { class Child extends Plain {} }
            if (!\interface_exists('App\\Shape', false)) { interface Shape extends \Countable {} }
            if (!\trait_exists('App\\Loud', false)) { trait Loud { use Other; } }

            if (true) { function conditional() {} }
            $f = function () use ($x) { return 1; };
            PHP, $body);
        self::assertSame(<<<'PHP'
            <?php 
            declare(strict_types=1);
            namespace App;

            use Foo\Bar;

            /** A doc comment. */
            function helper(): string { return \Courser\Http\Legacy\Functions::header('X: 1') ?? ''; }
            #[\Attribute]
            final class Plain {}



            enum Suit { case Hearts; }


            PHP, $declarations);

        foreach ([$body, $declarations] as $part) {
            \PhpToken::tokenize((string) $part, TOKEN_PARSE);
        }
    }

    public function testAFileWithoutDeclarationsHasNoDeclarationsPart(): void
    {
        [$body, $declarations] = Rewriter::rewrite("<?php\necho 1;\n", '/app/a.php', '/cache/a.decl.php');

        self::assertSame("<?php\necho 1;\n", $body);
        self::assertNull($declarations);
    }

    public function testAFileThatStartsWithHtmlLoadsItsDeclarationsFirst(): void
    {
        $code = "<html><?= page() ?>\n<?php function page() { return 'p'; } ?>\n</html>\n";

        [$body, $declarations] = Rewriter::rewrite($code, '/app/t.php', '/cache/t.decl.php');

        self::assertSame("<?php require_once '/cache/t.decl.php'; ?>\n<html><?= page() ?>\n<?php  ?>\n</html>\n", $body);
        self::assertSame("<?php \nfunction page() { return 'p'; }\n\n", $declarations);
    }

    public function testDeclarationsInsideAlternativeSyntaxBlocksStayConditional(): void
    {
        [$body, $declarations] = Rewriter::rewrite("<?php\nif (\$a):\n  function alt() {}\nendif;\nfunction top() {}\n", '/app/a.php', '/cache/a.decl.php');

        self::assertStringContainsString('function alt() {}', $body);
        self::assertStringNotContainsString('function top', $body);
        self::assertStringContainsString('function top() {}', (string) $declarations);
    }

    public function testBracedNamespacesKeepTheirBlocksInBothParts(): void
    {
        $code = "<?php\nnamespace A {\n  function f() {}\n  echo f();\n}\nnamespace {\n  echo A\\f();\n}\n";

        [$body, $declarations] = Rewriter::rewrite($code, '/app/a.php', '/cache/a.decl.php');

        self::assertSame("<?php\nnamespace A { require_once '/cache/a.decl.php';\n  \n  echo f();\n}\nnamespace {\n  echo A\\f();\n}\n", $body);
        self::assertSame("<?php \nnamespace A {\nfunction f() {}\n\n}\nnamespace {\n\n}\n", $declarations);
        \PhpToken::tokenize($body, TOKEN_PARSE);
        \PhpToken::tokenize((string) $declarations, TOKEN_PARSE);
    }

    public function testARewrittenFileRunsTwiceWithoutRedeclaring(): void
    {
        $dir = sys_get_temp_dir() . '/courser-rewriter-' . getmypid() . '-' . bin2hex(random_bytes(3));
        mkdir($dir);
        $suffix = bin2hex(random_bytes(4));
        $code = "<?php\nreturn courser_twice_{$suffix}() . (new CourserTwice{$suffix}())->v;\nfunction courser_twice_{$suffix}() { return 'f'; }\nclass CourserTwice{$suffix} { public \$v = 'c'; }\n";
        [$body, $declarations] = Rewriter::rewrite($code, $dir . '/orig.php', $dir . '/decl.php');
        file_put_contents($dir . '/body.php', $body);
        file_put_contents($dir . '/decl.php', (string) $declarations);

        try {
            self::assertSame('fc', require $dir . '/body.php');
            self::assertSame('fc', require $dir . '/body.php');
        } finally {
            array_map('unlink', glob($dir . '/*') ?: []);
            rmdir($dir);
        }
    }

    private function body(string $code, string $path = '/app/a.php'): string
    {
        return Rewriter::rewrite($code, $path, '/cache/a.decl.php')[0];
    }

    private function f(string $name): string
    {
        return self::F . $name;
    }

    private function i(): string
    {
        return self::I;
    }

    private function o(): string
    {
        return '\\Courser\\Http\\Legacy\\Includes::once';
    }
}
